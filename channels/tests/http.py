"""HttpClient (alias WSClient): a test Client that talks like a browser's WebSocket.

It adds ``path``, ``headers`` (with its cookies, including a Django session it creates)
and, with ``ordered=True``, a running ``order`` to every message; ``receive()`` decodes
JSON text frames; ``login``/``force_login`` log its session in.
"""

from __future__ import annotations

import copy
import json as jsonlib
from http.cookies import SimpleCookie
from importlib import import_module
from typing import Any

from django.apps import apps
from django.conf import settings

from .base import Client

__all__ = ["HttpClient", "WSClient"]


class HttpClient(Client):
    """A Client with a session, cookies, headers and WebSocket-style content.

    Args:
        ordered: number the messages (``order`` 0, 1, 2...) for enforce_ordering.
        alias: the channel layer alias to use.
    """

    def __init__(self, ordered: bool = False, alias: str = "default") -> None:
        super().__init__(alias=alias)
        self.ordered = ordered
        self.order = 0
        self._session: Any = None
        self._headers: dict[str, str] = {}
        self._cookies: dict[str, str] = {}
        self._session_cookie = True

    def set_cookie(self, key: str, value: str) -> None:
        self._cookies[key] = value

    def set_header(self, name: str, value: str) -> None:
        self._headers[name.lower()] = value

    def get_cookies(self) -> dict[str, str]:
        """The cookies sent, with the session cookie while the session is in use."""
        cookies = dict(self._cookies)
        if self._session_cookie and apps.is_installed("django.contrib.sessions"):
            cookies[settings.SESSION_COOKIE_NAME] = self.session.session_key
        return cookies

    @property
    def headers(self) -> list[list[bytes]]:
        """ASGI headers: the set ones plus ``cookie``."""
        headers = dict(self._headers)
        cookies = self.get_cookies()
        if cookies and "cookie" not in headers:
            jar = SimpleCookie()
            for key, value in cookies.items():
                jar[key] = value
            headers["cookie"] = "; ".join(f"{m.key}={m.coded_value}" for m in jar.values())
        return [[name.encode("latin-1"), value.encode("latin-1")] for name, value in headers.items()]

    @property
    def session(self) -> Any:
        """This client's Django session (created and saved on first use)."""
        if self._session is None:
            self._session = import_module(settings.SESSION_ENGINE).SessionStore()
            self._session.save()
        return self._session

    def _content(self, content: dict[str, Any] | None, text: Any, path: str) -> dict[str, Any]:
        content = copy.deepcopy(content or {})
        content.setdefault("reply_channel", self.reply_channel)
        content.setdefault("path", path)
        content.setdefault("headers", self.headers)
        content.setdefault("query_string", b"")
        if self.ordered:
            if "order" in content:
                raise ValueError('Do not set "order" yourself with ordered=True')
            content["order"] = self.order
            self.order += 1
        text = text if text is not None else content.get("text")
        if text is not None:
            content["text"] = text if isinstance(text, str) else jsonlib.dumps(text)
            content.setdefault("bytes", None)
        return content

    def send(self, to: str, content: dict[str, Any] | None = None, text: Any = None, path: str = "/") -> None:  # type: ignore[override]
        """Send a message to ``to``; ``text`` that is not a str is sent as JSON."""
        self.channel_layer.send(to, self._content(content, text, path))

    def send_and_consume(  # type: ignore[override]
        self, channel: str, content: dict[str, Any] | None = None, text: Any = None, path: str = "/",
        fail_on_none: bool = True, check_accept: bool = True,
    ) -> Any:
        """Send, then consume; a connect must be answered ``{"accept": True}`` (``check_accept``)."""
        self.send(channel, content, text, path)
        return self.consume(channel, fail_on_none=fail_on_none, check_accept=check_accept)

    def consume(self, channel: str, fail_on_none: bool = True, check_accept: bool = True) -> Any:  # type: ignore[override]
        result = super().consume(channel, fail_on_none=fail_on_none)
        if channel == "websocket.connect" and check_accept:
            received = self.receive(json=False)
            if received != {"accept": True}:
                raise AssertionError(f"Connection rejected: {received} != {{'accept': True}}")
        return result

    def receive(self, json: bool = True) -> Any:  # type: ignore[override]
        """The next reply; with ``json``, a text frame is returned decoded."""
        content = super().receive()
        if content is not None and json and isinstance(content.get("text"), str):
            return jsonlib.loads(content["text"])
        return content

    def login(self, **credentials: Any) -> bool:
        """Log the session in with ``authenticate(**credentials)``; False if refused."""
        from django.contrib.auth import authenticate

        user = authenticate(**credentials)
        if user is None or not user.is_active:
            return False
        self._login(user)
        return True

    def force_login(self, user: Any, backend: str | None = None) -> None:
        """Log ``user`` in without credentials."""
        user.backend = backend or settings.AUTHENTICATION_BACKENDS[0]
        self._login(user)

    def _login(self, user: Any) -> None:
        from django.contrib.auth import login
        from django.http import HttpRequest

        request = HttpRequest()
        request.session = self.session
        login(request, user)
        self.session.save()


#: Channels 1.1 name of HttpClient.
WSClient = HttpClient
