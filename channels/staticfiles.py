"""Serve ``STATIC_URL`` from the workers in development, as Django's ``runserver`` does.

:class:`ViewConsumer` picks :class:`StaticFilesHandler` by itself when ``DEBUG`` is on and
``django.contrib.staticfiles`` is installed; :class:`StaticFilesConsumer` is the explicit
Channels 1.x name for routing it by hand. Files come from the static file finders
(``django.contrib.staticfiles.views.serve``), never from ``STATIC_ROOT`` alone, so no
``collectstatic`` is needed while developing. Anything outside ``STATIC_URL`` goes
through Django's middleware and views as usual.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from django.conf import settings
from django.contrib.staticfiles import utils
from django.contrib.staticfiles.views import serve
from django.core.handlers.exception import response_for_exception
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase

from channels.handler import AsgiHandler, ViewConsumer

__all__ = ["StaticFilesConsumer", "StaticFilesHandler"]


class StaticFilesHandler(AsgiHandler):
    """An :class:`AsgiHandler` that answers ``STATIC_URL`` paths with static files.

    Raises:
        ImproperlyConfigured: ``STATIC_URL`` is unset or inconsistent (checked at start,
            by ``django.contrib.staticfiles.utils.check_settings``).
    """

    #: Lets a ``request_finished`` receiver tell static-file requests apart (as Django's).
    handles_files = True

    def __init__(self) -> None:
        super().__init__()
        utils.check_settings()
        self.base_url = urlparse(settings.STATIC_URL)

    def _should_handle(self, path: str) -> bool:
        # A STATIC_URL on another host (a CDN) is not ours to serve.
        return bool(self.base_url.path) and path.startswith(self.base_url.path) and not self.base_url.netloc

    def file_path(self, url: str) -> str:
        """The path of the file under the finders for the request ``url``."""
        return url2pathname(url.removeprefix(self.base_url.path))

    def get_response(self, request: HttpRequest) -> HttpResponseBase:
        """Serve a static file for ``STATIC_URL`` paths, else run Django as usual."""
        if not self._should_handle(request.path):
            return super().get_response(request)
        try:
            response = serve(request, self.file_path(request.path), insecure=True)
        except Http404 as exc:
            response = response_for_exception(request, exc)
        response._resource_closers.append(request.close)
        return response


class StaticFilesConsumer(ViewConsumer):
    """A :class:`ViewConsumer` that always serves ``STATIC_URL`` (even with DEBUG off)."""

    handler_class = StaticFilesHandler

    def _make_handler(self) -> Any:
        return self.handler_class()
