import hashlib
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class AuditEvent(models.Model):
    """Who changed what, when and from where. Written for every mutation, never edited."""

    time = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=60)
    entity_type = models.CharField(max_length=40, blank=True)
    entity_uuid = models.UUIDField(null=True, blank=True, db_index=True)
    entity_name = models.CharField(max_length=80, blank=True)
    source_address = models.GenericIPAddressField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-time", "-id"]

    def __str__(self) -> str:
        return f"{self.username} {self.action} {self.entity_name}"


class ApiToken(models.Model):
    """A named, revocable API token. Only its SHA-256 is stored: tokens are 256-bit random, so a plain
    hash is as strong as a password hash here and lets each request find its token with one lookup."""

    PREFIX = "facet_"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=64)
    key_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=16, help_text="First characters, to tell tokens apart")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], condition=Q(revoked_at__isnull=True),
                                    name="active_token_name_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} / {self.name}"

    @staticmethod
    def hash(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    @classmethod
    def generate_key(cls) -> str:
        return cls.PREFIX + secrets.token_urlsafe(32)
