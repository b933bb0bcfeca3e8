"""Images record their format. An image that existed before is inspected once here, as a new upload is: a
clean qcow2 is recorded as qcow2; anything unsafe or unreadable stays raw (read byte for byte, never
following a backing file), and is named in the migration's output."""

from pathlib import Path

from django.db import migrations, models


def inspect_existing(apps, schema_editor):
    from console.core.drivers import qemu_img

    Image = apps.get_model("console", "Image")
    for image in Image.objects.filter(kind="disk").select_related("container"):
        path = Path(image.container.path) / image.file_name
        try:
            found = qemu_img.inspect(path)
        except (qemu_img.UnsafeImage, OSError) as exc:
            print(f"\n  image {image.name}: kept as raw ({exc})")
            continue
        if found != "raw":
            Image.objects.filter(pk=image.pk).update(disk_format=found)


class Migration(migrations.Migration):

    dependencies = [
        ('console', '0003_vm_name_index'),
    ]

    operations = [
        migrations.AddField(
            model_name='image',
            name='disk_format',
            field=models.CharField(choices=[('raw', 'raw'), ('qcow2', 'qcow2')], default='raw', max_length=8),
        ),
        migrations.RunPython(inspect_existing, migrations.RunPython.noop),
    ]
