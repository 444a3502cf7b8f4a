"""Pages of the chat: the room list (with a form to join one) and a room's page."""
from __future__ import annotations

import re

from django import forms
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from chat.models import (
    HISTORY_SIZE,
    ROOM_NAME_MAX_LENGTH,
    ROOM_NAME_PATTERN,
    USERNAME_MAX_LENGTH,
    ChatMessage,
    Room,
)


class JoinForm(forms.Form):
    """Pick a room (existing or new) and the name to chat under."""

    room = forms.RegexField(
        regex=ROOM_NAME_PATTERN,
        max_length=ROOM_NAME_MAX_LENGTH,
        error_messages={"invalid": "Use letters, digits, '-' and '_' only."},
        widget=forms.TextInput(attrs={"placeholder": "lobby", "autocomplete": "off"}),
    )
    username = forms.CharField(
        max_length=USERNAME_MAX_LENGTH,
        widget=forms.TextInput(attrs={"placeholder": "your name", "autocomplete": "off"}),
    )


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """List the rooms; a filled-in join form redirects to the chosen room."""
    if "username" in request.GET:
        form = JoinForm(request.GET)
    else:
        form = JoinForm(initial={"room": request.GET.get("room", "lobby")})
    if form.is_bound and form.is_valid():
        url = reverse("room", kwargs={"room_name": form.cleaned_data["room"]})
        return redirect("%s?%s" % (url, urlencode({"username": form.cleaned_data["username"]})))
    rooms = Room.objects.annotate(message_count=Count("messages")).order_by("name")
    return render(request, "chat/index.html", {"form": form, "rooms": rooms})


def _get_room(room_name: str) -> Room:
    if len(room_name) > ROOM_NAME_MAX_LENGTH or not re.match(ROOM_NAME_PATTERN, room_name):
        raise Http404("No such room")
    room, _ = Room.objects.get_or_create(name=room_name)
    return room


@require_GET
def room(request: HttpRequest, room_name: str) -> HttpResponse:
    """A room's page: its last messages, rendered; the script keeps it live."""
    chat_room = _get_room(room_name)
    username = " ".join(request.GET.get("username", "").split())[:USERNAME_MAX_LENGTH]
    if not username:
        url = reverse("index")
        return redirect("%s?%s" % (url, urlencode({"room": chat_room.name})))
    return render(request, "chat/room.html", {
        "room": chat_room,
        "username": username,
        "chat_messages": chat_room.last_messages(HISTORY_SIZE),
    })


@require_GET
def history(request: HttpRequest, room_name: str) -> JsonResponse:
    """Messages of a room newer than ``?after=<id>`` (the script fills gaps after a reconnect)."""
    try:
        room_obj = Room.objects.get(name=room_name)
    except Room.DoesNotExist:
        raise Http404("No such room") from None
    try:
        after = int(request.GET.get("after", "0"))
    except ValueError:
        return JsonResponse({"error": "'after' must be an integer message id"}, status=400)
    rows = ChatMessage.objects.filter(room=room_obj, pk__gt=after).order_by("id")[:HISTORY_SIZE]
    return JsonResponse({"messages": [row.as_dict() for row in rows]})
