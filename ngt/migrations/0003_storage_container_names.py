""""Storage container" is no longer shortened to "container" in code."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ngt", "0002_restore_disks")]

    operations = [
        migrations.AlterField("restoredisk", "file_names", models.JSONField(
            default=list, help_text="Their overlay files, in the snapshot's storage container")),
    ]
