"""channels.apps: `manage.py runserver` is ours even when staticfiles is listed first."""

import django
from django.core.management import get_commands, load_command_class


def test_runserver_resolves_to_the_channels_command_with_staticfiles_first():
    django.setup()
    from django.conf import settings

    from channels.management.commands.runserver import Command as ChannelsRunserver

    apps = list(settings.INSTALLED_APPS)
    assert apps.index("django.contrib.staticfiles") < apps.index("channels")  # the case that needs the fix
    command = load_command_class(get_commands()["runserver"], "runserver")
    assert isinstance(command, ChannelsRunserver)
    options = {action.dest for action in command.create_parser("manage.py", "runserver")._actions}
    assert {"run_worker", "insecure_serving", "use_static_handler"} <= options
