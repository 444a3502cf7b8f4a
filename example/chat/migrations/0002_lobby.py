"""Every fresh site starts with one room, ``lobby``, so the room list is never empty."""
from django.db import migrations


def create_lobby(apps, schema_editor):
    Room = apps.get_model("chat", "Room")
    Room.objects.get_or_create(name="lobby")


def remove_lobby(apps, schema_editor):
    Room = apps.get_model("chat", "Room")
    Room.objects.filter(name="lobby", messages__isnull=True).delete()


class Migration(migrations.Migration):

    dependencies = [("chat", "0001_initial")]

    operations = [migrations.RunPython(create_lobby, remove_lobby)]
