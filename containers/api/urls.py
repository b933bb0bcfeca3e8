"""REST endpoints of this app (included under /api/v1/ by console/api/urls.py)."""

urlpatterns: list = []
