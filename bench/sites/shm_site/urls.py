from django.urls import path

from bench.sites.common import hello

urlpatterns = [path("", hello)]
