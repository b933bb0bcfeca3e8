from django.urls import path

from .consumers import ConsoleConsumer

websocket_urlpatterns = [
    path("ws/vms/<uuid:uuid>/console/<str:kind>/", ConsoleConsumer.as_asgi()),
]
