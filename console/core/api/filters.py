from rest_framework.filters import OrderingFilter


class StableOrderingFilter(OrderingFilter):
    """Orders as asked, then by id, so that rows with equal values never move between pages
    (PostgreSQL does not keep ties in a stable order)."""

    def get_ordering(self, request, queryset, view):
        ordering = super().get_ordering(request, queryset, view)
        return [*ordering, "id"] if ordering else ordering
