"""Console pages of this app (included at the site root by console/urls.py)."""

urlpatterns: list = []
