from django.apps import AppConfig


class ChatappConfig(AppConfig):
    name = "tests.djangoproject.chatapp"
    label = "chatapp"
    default_auto_field = "django.db.models.AutoField"
