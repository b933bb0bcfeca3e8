""""Storage container" is no longer shortened to "container" in code (the API keeps its field names)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("console", "0008_snapshots")]

    operations = [
        migrations.RenameField("image", "container", "storage_container"),
        migrations.RenameField("virtualdisk", "container", "storage_container"),
        migrations.RemoveConstraint("storagecontainer", "container_name_per_cluster"),
        migrations.AddConstraint("storagecontainer", models.UniqueConstraint(
            fields=["cluster", "name"], name="storage_container_name_per_cluster")),
    ]
