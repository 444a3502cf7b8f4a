"""Suite-wide setup: Django-using tests share one small settings module."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.djangoproject.settings")
