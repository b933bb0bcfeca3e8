""""Storage container" is no longer shortened to "container" in code (the API keeps its field names)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("containers", "0003_volume_group_shared_with"), ("console", "0009_storage_container_names")]

    operations = [
        migrations.RenameField("volumegroup", "container", "storage_container"),
        migrations.RenameField("dockerhost", "containers_seen", "storage_containers_seen"),
        migrations.AlterField("dockerhost", "probe_nonce", models.CharField(
            max_length=64, help_text="Written into each storage container; the plugin reads it back")),
    ]
