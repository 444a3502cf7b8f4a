"""Echo on /echo/, one broadcast room on /room/ — the Channels 1.x way."""
from channels import Group
from channels.routing import route


def echo(message):
    content = {}
    if message.get("text") is not None:
        content["text"] = message["text"]
    if message.get("bytes") is not None:
        content["bytes"] = message["bytes"]
    message.reply_channel.send(content)


def room_connect(message):
    message.reply_channel.send({"accept": True})
    Group("bench-room").add(message.reply_channel)


def room_receive(message):
    Group("bench-room").send({"text": message["text"]})


def room_disconnect(message):
    Group("bench-room").discard(message.reply_channel)


channel_routing = [
    route("websocket.receive", echo, path=r"^/echo/$"),
    route("websocket.connect", room_connect, path=r"^/room/$"),
    route("websocket.receive", room_receive, path=r"^/room/$"),
    route("websocket.disconnect", room_disconnect, path=r"^/room/$"),
]
