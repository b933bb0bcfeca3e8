from django.contrib.auth import views as auth_views
from django.urls import path

from ..forms.login import LoginForm
from . import access, dashboard, inventory, snapshots, tasks, vms

UUID = "<uuid:uuid>"

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True,
                                                                authentication_form=LoginForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("vms/", vms.vm_list, name="vm-list"),
    path("vms/new/", vms.vm_create, name="vm-create"),
    path("vms/bulk/", vms.vm_bulk, name="vm-bulk"),
    path(f"vms/{UUID}/", vms.vm_detail, name="vm-detail"),
    path(f"vms/{UUID}/power/", vms.vm_power, name="vm-power"),
    path(f"vms/{UUID}/clone/", vms.vm_clone, name="vm-clone"),
    path(f"vms/{UUID}/delete/", vms.vm_delete, name="vm-delete"),
    path(f"vms/{UUID}/insert-iso/", vms.vm_insert_iso, name="vm-insert-iso"),
    path(f"vms/{UUID}/eject-iso/", vms.vm_eject_iso, name="vm-eject-iso"),
    path(f"vms/{UUID}/snapshots/", snapshots.snapshot_panel, name="snapshot-panel"),
    path(f"vms/{UUID}/snapshots/new/", snapshots.snapshot_create, name="snapshot-create"),
    path(f"vms/{UUID}/snapshots/<uuid:snapshot>/revert/", snapshots.snapshot_revert, name="snapshot-revert"),
    path(f"vms/{UUID}/snapshots/<uuid:snapshot>/delete/", snapshots.snapshot_delete, name="snapshot-delete"),
    path("templates/", vms.template_list, name="template-list"),
    path("images/", inventory.image_list, name="image-list"),
    path(f"images/{UUID}/delete/", inventory.image_delete, name="image-delete"),
    path("networks/", inventory.network_list, name="network-list"),
    path("networks/new/", inventory.network_create, name="network-create"),
    path("storage/", inventory.storage_list, name="storage-list"),
    path("tasks/", tasks.task_list, name="task-list"),
    path("tasks/running/", tasks.running_indicator, name="task-running"),
    path(f"tasks/{UUID}/", tasks.task_detail, name="task-detail"),
    path(f"tasks/{UUID}/children/", tasks.task_children, name="task-children"),
    path(f"tasks/{UUID}/rerun/", tasks.task_rerun, name="task-rerun"),
    path("audit/", access.audit_list, name="audit-list"),
    path("settings/", access.settings_home, name="settings"),
    path("settings/tokens/", access.token_create, name="token-create"),
    path(f"settings/tokens/{UUID}/revoke/", access.token_revoke, name="token-revoke"),
    path("settings/users/", access.user_create, name="user-create"),
    path("settings/users/<int:user_id>/role/", access.user_role, name="user-role"),
]
