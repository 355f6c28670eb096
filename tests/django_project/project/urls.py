from django.urls import path
from shop import views

urlpatterns = [
    path("orders", views.create_order),
    path("orders/rolled-back", views.create_order_then_fail),
    path("orders/<int:pk>", views.order),
    path("add", views.add_async),
    path("enqueue/<str:name>", views.enqueue),
    path("results/<str:name>/<str:result_id>", views.result),
]
