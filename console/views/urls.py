from django.contrib.auth import views as auth_views
from django.urls import path

from ..forms.login import LoginForm
from . import access, dashboard, hosts, insight, inventory, tasks, vm_day2, vms

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
    path(f"vms/{UUID}/edit/", vm_day2.vm_edit_page, name="vm-edit"),
    path(f"vms/{UUID}/disks/<str:operation>/", vm_day2.vm_disk, name="vm-disk"),
    path(f"vms/{UUID}/nics/<str:operation>/", vm_day2.vm_nic, name="vm-nic"),
    path(f"vms/{UUID}/make-template/", vms.vm_make_template, name="vm-make-template"),
    path(f"vms/{UUID}/make-vm/", vms.vm_make_vm, name="vm-make-vm"),
    path(f"vms/{UUID}/console/", insight.vm_console, name="vm-console"),
    path(f"vms/{UUID}/console/ticket/", insight.vm_console_ticket, name="vm-console-ticket"),
    path(f"vms/{UUID}/performance/", insight.vm_performance, name="vm-performance"),
    path("templates/", vms.template_list, name="template-list"),
    path("images/", inventory.image_list, name="image-list"),
    path("images/upload-check/", inventory.image_upload_check, name="image-upload-check"),
    path(f"images/{UUID}/delete/", inventory.image_delete, name="image-delete"),
    path("images/import/", inventory.image_import_url, name="image-import"),
    path("networks/", inventory.network_list, name="network-list"),
    path("networks/new/", inventory.network_create, name="network-create"),
    path("storage/", inventory.storage_list, name="storage-list"),
    path("hosts/", hosts.host_list, name="host-list"),
    path(f"hosts/{UUID}/", hosts.host_detail, name="host-detail"),
    path(f"hosts/{UUID}/maintenance/", hosts.host_maintenance, name="host-maintenance"),
    path("tasks/", tasks.task_list, name="task-list"),
    path("tasks/running/", tasks.running_indicator, name="task-running"),
    path(f"tasks/{UUID}/", tasks.task_detail, name="task-detail"),
    path(f"tasks/{UUID}/children/", tasks.task_children, name="task-children"),
    path(f"tasks/{UUID}/rerun/", tasks.task_rerun, name="task-rerun"),
    path(f"tasks/{UUID}/cancel/", tasks.task_cancel, name="task-cancel"),
    path("audit/", access.audit_list, name="audit-list"),
    path("settings/", access.settings_home, name="settings"),
    path("settings/tokens/", access.token_create, name="token-create"),
    path(f"settings/tokens/{UUID}/revoke/", access.token_revoke, name="token-revoke"),
    path("settings/users/", access.user_create, name="user-create"),
    path("settings/users/<int:user_id>/role/", access.user_role, name="user-role"),
]
