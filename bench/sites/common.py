"""The view both benchmark sites serve: a plain Django view with a small HTML body."""
from django.http import HttpResponse

BODY = b"<!doctype html><title>bench</title><p>Hello from Django.</p>\n" * 4


def hello(request):
    return HttpResponse(BODY, content_type="text/html; charset=utf-8")
