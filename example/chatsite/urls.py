"""URLs of the example chat site: the room list, a room's page and its history."""
from django.urls import path, re_path

from chat import views

urlpatterns = [
    path("", views.index, name="index"),
    re_path(r"^chat/(?P<room_name>[a-zA-Z0-9_-]+)/$", views.room, name="room"),
    re_path(r"^chat/(?P<room_name>[a-zA-Z0-9_-]+)/history/$", views.history, name="history"),
]
