"""channels.handler: AsgiRequest from http.request messages, AsgiHandler, encode_response.

Everything runs against a real in-memory layer: messages are sent on it, the handler
reads body chunks from it and writes the response to a real reply channel that the test
then receives from. The views live in this module, used as the URLconf.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time

import django
import pytest

django.setup()

from django.core import signals  # noqa: E402
from django.http import (  # noqa: E402
    FileResponse,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.test.utils import override_settings  # noqa: E402
from django.urls import path  # noqa: E402

from channels.asgi import ChannelLayerWrapper  # noqa: E402
from channels.exceptions import RequestAborted  # noqa: E402
from channels.handler import (  # noqa: E402
    CHUNK_SIZE,
    AsgiHandler,
    AsgiRequest,
    InvalidRequestMessage,
    ViewConsumer,
)
from channels.layers.inmemory import InMemoryChannelLayer  # noqa: E402
from channels.message import Message  # noqa: E402

URLCONF = __name__
REPLY_PREFIX = "http.response.test!"


# ----------------------------------------------------------------------------- views


def echo(request):
    files = {name: [f.name, f.size, f.read().decode()] for name, f in request.FILES.items()}
    return JsonResponse({
        "method": request.method,
        "path": request.path,
        "path_info": request.path_info,
        "GET": request.GET.dict(),
        "POST": request.POST.dict(),
        "FILES": files,
        "COOKIES": request.COOKIES,
        "secure": request.is_secure(),
    })


def body_length(request):
    return HttpResponse(str(len(request.body)))


def big(request):
    size = int(request.GET["size"])
    return HttpResponse(bytes(index % 251 for index in range(size)), content_type="application/octet-stream")


def cookies(request):
    response = HttpResponse("cookies")
    response.set_cookie("first", "1")
    response.set_cookie("second", "2", httponly=True)
    return response


def stream(request):
    return StreamingHttpResponse(f"part{index};".encode() for index in range(5))


def crash(request):
    raise ValueError("boom")


urlpatterns = [
    path("echo/", echo),
    path("length/", body_length),
    path("big/", big),
    path("cookies/", cookies),
    path("stream/", stream),
    path("crash/", crash),
]


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def layer():
    layer = InMemoryChannelLayer(capacity=100)
    yield layer
    layer.close()


@pytest.fixture(autouse=True)
def urlconf():
    with override_settings(ROOT_URLCONF=URLCONF, DEBUG=False):
        yield


def request_message(layer, path="/echo/", method="GET", **extra):
    content = {
        "reply_channel": REPLY_PREFIX + "c1",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "query_string": b"",
        "root_path": "",
        "headers": [[b"host", b"testserver"]],
        "body": b"",
        "client": ["10.1.2.3", 40000],
        "server": ["127.0.0.1", 8000],
    }
    content.update(extra)
    return Message(content, "http.request", ChannelLayerWrapper(layer, "default", []))


def read_replies(layer, deadline=5.0):
    """Receive the response messages on the reply channel until more_content is False."""
    replies = []
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        channel, reply = layer.receive([REPLY_PREFIX], block=True)
        if reply is None:
            continue
        assert channel == REPLY_PREFIX + "c1"
        replies.append(reply)
        if not reply.get("more_content", False):
            return replies
    raise AssertionError(f"response not complete after {deadline}s: {replies!r}")


def run(layer, **kwargs):
    handler = AsgiHandler()
    handler(request_message(layer, **kwargs))
    return read_replies(layer)


def body_of(replies):
    return b"".join(reply.get("content", b"") for reply in replies)


def headers_of(reply):
    return [(name.lower(), value) for name, value in reply["headers"]]


# ----------------------------------------------------------------------------- AsgiRequest


def test_meta_follows_the_wsgi_mapping(layer):
    request = AsgiRequest(request_message(
        layer, path="/app/echo/", root_path="/app", method="post", query_string=b"a=1&b=%C3%A9",
        headers=[
            [b"host", b"example.com"], [b"content-type", b"text/plain; charset=utf-8"],
            [b"content-length", b"0"], [b"x-thing", b"one"], [b"X-Thing", b"two"],
            [b"x_spoof", b"dropped"], [b"cookie", b"a=1"], [b"cookie", b"b=2"],
        ],
    ))
    meta = request.META
    assert meta["REQUEST_METHOD"] == "POST"
    assert meta["SCRIPT_NAME"] == "/app" and meta["PATH_INFO"] == "/echo/"
    assert request.path == "/app/echo/" and request.path_info == "/echo/"
    assert meta["QUERY_STRING"] == "a=1&b=%C3%A9"
    assert meta["CONTENT_TYPE"] == "text/plain; charset=utf-8" and meta["CONTENT_LENGTH"] == "0"
    assert meta["HTTP_HOST"] == "example.com"
    assert meta["HTTP_X_THING"] == "one,two"
    assert "HTTP_X_SPOOF" not in meta
    assert request.COOKIES == {"a": "1", "b": "2"}
    assert (meta["SERVER_NAME"], meta["SERVER_PORT"]) == ("127.0.0.1", "8000")
    assert (meta["REMOTE_ADDR"], meta["REMOTE_PORT"]) == ("10.1.2.3", "40000")
    assert meta["wsgi.url_scheme"] == "http" and not request.is_secure()
    assert request.GET.dict() == {"a": "1", "b": "é"}
    assert request.encoding == "utf-8"


def test_meta_defaults_without_server_and_client_and_https(layer):
    request = AsgiRequest(request_message(layer, server=None, client=None, scheme="https"))
    assert (request.META["SERVER_NAME"], request.META["SERVER_PORT"]) == ("unknown", "0")
    assert "REMOTE_ADDR" not in request.META
    assert request.is_secure() and request.scheme == "https"


def test_root_path_that_is_not_a_prefix_keeps_the_path(layer):
    request = AsgiRequest(request_message(layer, path="/application/x", root_path="/app"))
    assert request.path_info == "/application/x"


@pytest.mark.parametrize("bad", [
    {"method": None},
    {"path": None},
    {"path": "no-slash"},
    {"headers": "host: x"},
    {"headers": [[b"host"]]},
    {"headers": [[b"host", 5]]},
    {"query_string": b"\xff\xfe"},
    {"query_string": 7},
    {"body": "text, not bytes"},
    {"client": ["1.2.3.4"]},
    {"server": "localhost"},
    {"headers": [[b"content-length", b"-5"]]},
    {"headers": [[b"content-length", b"12abc"]]},
])
def test_invalid_messages_raise_invalid_request(layer, bad):
    with pytest.raises(InvalidRequestMessage):
        AsgiRequest(request_message(layer, **bad))


def test_post_form_and_multipart_files(layer):
    form = run(layer, path="/echo/", method="POST", body=b"name=ann&x=1", headers=[
        [b"host", b"testserver"], [b"content-type", b"application/x-www-form-urlencoded"],
        [b"content-length", b"12"],
    ])
    assert form[0]["status"] == 200
    assert json.loads(body_of(form))["POST"] == {"name": "ann", "x": "1"}
    boundary = "XyZ"
    multipart = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"a.txt\"\r\n"
        f"Content-Type: text/plain\r\n\r\nfile body\r\n--{boundary}--\r\n"
    ).encode()
    # No Content-Length: a chunked upload. The request states the length it received.
    replies = run(layer, path="/echo/", method="POST", body=multipart, headers=[
        [b"host", b"testserver"], [b"content-type", f"multipart/form-data; boundary={boundary}".encode()],
    ])
    data = json.loads(body_of(replies))
    assert data["POST"] == {"title": "hello"}
    assert data["FILES"] == {"doc": ["a.txt", 9, "file body"]}


def test_cookies_and_query_reach_the_view(layer):
    replies = run(layer, path="/echo/", query_string=b"q=%E2%9C%93&n=2",
                  headers=[[b"host", b"testserver"], [b"cookie", b"sessionid=abc; theme=dark"]])
    data = json.loads(body_of(replies))
    assert data["GET"] == {"q": "✓", "n": "2"}
    assert data["COOKIES"] == {"sessionid": "abc", "theme": "dark"}


# ----------------------------------------------------------------------------- body channel


def test_body_is_body_plus_every_chunk_from_the_body_channel(layer):
    body_channel = layer.new_channel("http.request.body?")
    layer.send(body_channel, {"content": b"-two-", "more_content": True})
    layer.send(body_channel, {"content": b"-three", "more_content": False})
    layer.send(body_channel, {"content": b"ignored after the last chunk"})
    request = AsgiRequest(request_message(layer, method="POST", body=b"one", body_channel=body_channel))
    assert request.body == b"one-two--three"
    assert request.META["CONTENT_LENGTH"] == str(len(b"one-two--three"))


def test_body_chunks_arriving_later_are_waited_for(layer):
    body_channel = layer.new_channel("http.request.body?")

    def upload():
        for index in range(3):
            time.sleep(0.05)
            layer.send(body_channel, {"content": b"%d" % index, "more_content": index < 2})

    sender = threading.Thread(target=upload)
    sender.start()
    try:
        replies = run(layer, path="/length/", method="POST", body=b"ab", body_channel=body_channel)
    finally:
        sender.join(5)
    assert body_of(replies) == b"5"


def test_large_body_is_spooled_to_disk(layer):
    body_channel = layer.new_channel("http.request.body?")
    chunk = b"z" * 100_000
    for index in range(5):
        layer.send(body_channel, {"content": chunk, "more_content": index < 4})
    with override_settings(FILE_UPLOAD_MAX_MEMORY_SIZE=64 * 1024, DATA_UPLOAD_MAX_MEMORY_SIZE=None):
        request = AsgiRequest(request_message(layer, method="PUT", body_channel=body_channel))
        assert request._stream._rolled  # on disk, not one big bytes
        assert len(request.body) == 500_000
    request.close()


def test_body_timeout_answers_408(layer, monkeypatch):
    monkeypatch.setattr(AsgiRequest, "body_receive_timeout", 0.5)
    body_channel = layer.new_channel("http.request.body?")
    started = time.monotonic()
    replies = run(layer, path="/length/", method="POST", body=b"x", body_channel=body_channel)
    assert replies[0]["status"] == 408
    assert time.monotonic() - started < 5


def test_closed_body_aborts_without_an_answer(layer):
    body_channel = layer.new_channel("http.request.body?")
    layer.send(body_channel, {"content": b"partial", "more_content": True})
    layer.send(body_channel, {"closed": True})
    with pytest.raises(RequestAborted):
        AsgiRequest(request_message(layer, method="POST", body_channel=body_channel))
    layer.send(body_channel, {"closed": True})
    finished = []
    receiver = lambda **kwargs: finished.append(kwargs)  # noqa: E731
    signals.request_finished.connect(receiver)
    try:
        AsgiHandler()(request_message(layer, method="POST", body_channel=body_channel))
    finally:
        signals.request_finished.disconnect(receiver)
    assert layer.receive([REPLY_PREFIX]) == (None, None)
    assert len(finished) == 1


def test_data_upload_max_memory_size_answers_413(layer):
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10):
        replies = run(layer, path="/length/", method="POST", body=b"0123456789ABC", headers=[
            [b"host", b"testserver"], [b"content-type", b"application/octet-stream"],
        ])
    assert replies[0]["status"] == 413
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100):
        replies = run(layer, path="/length/", method="POST", body=b"0123456789ABC")
    assert body_of(replies) == b"13"


def test_declared_length_over_the_limit_answers_413_without_reading(layer):
    body_channel = layer.new_channel("http.request.body?")  # nothing will ever arrive on it
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000):
        replies = run(layer, path="/length/", method="POST", body_channel=body_channel, headers=[
            [b"host", b"testserver"], [b"content-length", b"5000"],
        ])
    assert replies[0]["status"] == 413


def test_multipart_files_do_not_count_but_big_fields_do(layer):
    boundary = "B0undary"

    def part(name, value, filename=None):
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        return f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n{value}\r\n"

    headers = [[b"host", b"testserver"], [b"content-type", f"multipart/form-data; boundary={boundary}".encode()]]
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000):
        upload = (part("doc", "f" * 5000, filename="big.txt") + f"--{boundary}--\r\n").encode()
        replies = run(layer, path="/echo/", method="POST", body=upload, headers=headers)
        assert replies[0]["status"] == 200
        assert json.loads(body_of(replies))["FILES"]["doc"][1] == 5000
        field = (part("text", "t" * 5000) + f"--{boundary}--\r\n").encode()
        replies = run(layer, path="/echo/", method="POST", body=field, headers=headers)
        assert replies[0]["status"] == 413


# ----------------------------------------------------------------------------- responses


def test_small_response_is_one_message():
    messages = list(AsgiHandler.encode_response(HttpResponse(b"hi", status=201, content_type="text/plain")))
    assert len(messages) == 1
    assert messages[0]["status"] == 201 and messages[0]["content"] == b"hi"
    assert messages[0]["more_content"] is False
    assert (b"content-type", b"text/plain") in headers_of(messages[0])
    for name, value in messages[0]["headers"]:
        assert isinstance(name, bytes) and isinstance(value, bytes)


def test_big_body_is_chunked_at_512_kib():
    payload = os.urandom(2 * CHUNK_SIZE + 1000)
    messages = list(AsgiHandler.encode_response(HttpResponse(payload)))
    assert [len(m["content"]) for m in messages] == [CHUNK_SIZE, CHUNK_SIZE, 1000]
    assert [m["more_content"] for m in messages] == [True, True, False]
    assert "status" in messages[0] and all("status" not in m for m in messages[1:])
    assert body_of(messages) == payload


def test_set_cookie_headers_stay_separate():
    response = HttpResponse()
    response.set_cookie("a", "1")
    response.set_cookie("b", "2", max_age=10)
    (message,) = AsgiHandler.encode_response(response)
    set_cookies = [value for name, value in message["headers"] if name.lower() == b"set-cookie"]
    assert len(set_cookies) == 2
    assert set_cookies[0].startswith(b"a=1") and set_cookies[1].startswith(b"b=2")


def test_streaming_response_is_sent_chunk_by_chunk():
    produced = []

    def generate():
        for index in range(3):
            produced.append(index)
            yield b"x" * (index + 1)

    messages = AsgiHandler.encode_response(StreamingHttpResponse(generate()))
    first = next(messages)
    assert first["status"] == 200 and first["more_content"] is True and produced == []
    assert next(messages) == {"content": b"x", "more_content": True} and produced == [0]
    rest = list(messages)
    assert rest[-1] == {"content": b"", "more_content": False}
    assert body_of(rest) == b"xxxxx"


def test_file_response_streams_in_512_kib_blocks(layer, tmp_path):
    data = os.urandom(CHUNK_SIZE + 4321)
    target = tmp_path / "blob.bin"
    target.write_bytes(data)
    handler = AsgiHandler()
    response = FileResponse(open(target, "rb"))
    response.block_size = handler.chunk_size
    messages = list(AsgiHandler.encode_response(response))
    response.close()
    assert [len(m["content"]) for m in messages] == [0, CHUNK_SIZE, 4321, 0]
    assert body_of(messages) == data


def test_view_through_handler_with_big_and_streaming_and_cookie_views(layer):
    replies = run(layer, path="/big/", query_string=b"size=1200000")
    assert replies[0]["status"] == 200
    assert body_of(replies) == bytes(index % 251 for index in range(1200000))
    assert len(replies) == 3
    streamed = run(layer, path="/stream/")
    assert streamed[0]["status"] == 200 and body_of(streamed) == b"part0;part1;part2;part3;part4;"
    cookie = run(layer, path="/cookies/")
    assert len([1 for name, _ in cookie[0]["headers"] if name.lower() == b"set-cookie"]) == 2


def test_errors_become_django_responses(layer):
    assert run(layer, path="/crash/")[0]["status"] == 500
    assert run(layer, path="/nowhere/")[0]["status"] == 404
    assert run(layer, path="/echo/", headers="broken")[0]["status"] == 400


def test_request_signals_bracket_the_request(layer):
    seen = []
    started = lambda **kwargs: seen.append("started")  # noqa: E731
    finished = lambda **kwargs: seen.append("finished")  # noqa: E731
    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        run(layer, path="/echo/")
        run(layer, path="/stream/")
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert seen == ["started", "finished", "started", "finished"]


def test_full_reply_channel_is_waited_out(layer):
    small = InMemoryChannelLayer(capacity=1)
    received = []

    def reader():
        end = time.monotonic() + 10
        while time.monotonic() < end:
            time.sleep(0.02)  # a slow client
            _, reply = small.receive([REPLY_PREFIX], block=True)
            if reply is not None:
                received.append(reply)
                if not reply.get("more_content"):
                    return

    thread = threading.Thread(target=reader)
    thread.start()
    AsgiHandler()(request_message(small, path="/stream/"))
    thread.join(10)
    assert body_of(received) == b"part0;part1;part2;part3;part4;"
    assert received[0]["status"] == 200


def test_stream_is_abandoned_when_nobody_reads(monkeypatch):
    small = InMemoryChannelLayer(capacity=1)
    monkeypatch.setattr(AsgiHandler, "send_timeout", 0.2)
    finished = []
    receiver = lambda **kwargs: finished.append(1)  # noqa: E731
    signals.request_finished.connect(receiver)
    try:
        started = time.monotonic()
        AsgiHandler()(request_message(small, path="/stream/"))
        took = time.monotonic() - started
    finally:
        signals.request_finished.disconnect(receiver)
    assert took < 5
    assert finished == [1]  # the response was closed although it was never delivered
    _, first = small.receive([REPLY_PREFIX])
    assert first["status"] == 200
    assert small.receive([REPLY_PREFIX]) == (None, None)


def test_message_without_reply_channel_is_dropped(layer):
    message = request_message(layer)
    del message.content["reply_channel"]
    AsgiHandler()(message)
    assert layer.receive([REPLY_PREFIX]) == (None, None)


# ----------------------------------------------------------------------------- ViewConsumer


def test_view_consumer_answers_through_django(layer):
    ViewConsumer()(request_message(layer, path="/echo/", query_string=b"x=1"))
    replies = read_replies(layer)
    assert json.loads(body_of(replies))["GET"] == {"x": "1"}


def test_view_consumer_serves_static_files_in_debug(layer):
    from django.contrib.staticfiles import finders

    with tempfile.TemporaryDirectory() as static_dir:
        with open(os.path.join(static_dir, "app.css"), "wb") as handle:
            handle.write(b"body { color: red }")
        with override_settings(DEBUG=True, STATICFILES_DIRS=[static_dir]):
            finders.get_finder.cache_clear()
            try:
                consumer = ViewConsumer()
                consumer(request_message(layer, path="/static/app.css"))
                replies = read_replies(layer)
                assert replies[0]["status"] == 200
                assert body_of(replies) == b"body { color: red }"
                consumer(request_message(layer, path="/static/missing.css"))
                assert read_replies(layer)[0]["status"] == 404
                consumer(request_message(layer, path="/echo/"))
                assert json.loads(body_of(read_replies(layer)))["path"] == "/echo/"
            finally:
                finders.get_finder.cache_clear()
    with override_settings(DEBUG=False):
        ViewConsumer()(request_message(layer, path="/static/app.css"))
        assert read_replies(layer)[0]["status"] == 404


def test_request_sent_on_the_layer_is_answered_on_its_reply_channel(layer):
    layer.send("http.request", dict(request_message(layer, path="/echo/", query_string=b"via=layer").content))
    channel, content = layer.receive(["http.request"], block=True)
    AsgiHandler()(Message(content, channel, ChannelLayerWrapper(layer, "default", [])))
    replies = read_replies(layer)
    assert replies[0]["status"] == 200
    assert json.loads(body_of(replies))["GET"] == {"via": "layer"}


def later(request):
    from channels import Channel
    from channels.exceptions import ResponseLater

    # Another consumer (here: this view, at once) answers on the reply channel.
    reply = request.message.reply_channel.name
    Channel(reply, channel_layer=request.message.channel_layer).send(
        {"status": 202, "headers": [], "content": b"answered elsewhere"}, immediately=True)
    raise ResponseLater()


urlpatterns.append(path("later/", later))


def test_response_later_sends_nothing_itself(layer):
    replies = run(layer, path="/later/")
    assert replies == [{"status": 202, "headers": [], "content": b"answered elsewhere"}]
    assert layer.receive([REPLY_PREFIX]) == (None, None)


def test_failure_while_building_the_request_answers_500(layer, monkeypatch):
    def broken(self, content):
        raise OSError("disk full")

    monkeypatch.setattr(AsgiRequest, "_read_body", broken)
    assert run(layer, path="/echo/")[0]["status"] == 500


def test_chunks_shrink_to_fit_a_layer_with_small_messages():
    small = InMemoryChannelLayer(max_message_size=200 * 1024)
    assert AsgiHandler().chunk_size_for(small) == 136 * 1024
    assert AsgiHandler().chunk_size_for(InMemoryChannelLayer()) == CHUNK_SIZE
    AsgiHandler()(request_message(small, path="/big/", query_string=b"size=300000"))
    replies = read_replies(small)
    assert [len(r["content"]) for r in replies] == [136 * 1024, 136 * 1024, 300000 - 272 * 1024]
    assert body_of(replies) == bytes(index % 251 for index in range(300000))
