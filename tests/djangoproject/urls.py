from django.http import HttpResponse
from django.urls import path


def hello(request):
    return HttpResponse("Hello world! You asked for %s" % request.path)


urlpatterns = [path("", hello), path("hello/", hello)]
