"""The bulk clone wizard ("Deploy VMs" on a template, "Clone many" on a VM): server-rendered steps over one
form whose other steps ride along as hidden inputs. Every step is checked by the service's plan
(`plan_bulk_clone`, later steps at their defaults), the review shows the plan, the submit is
`request_bulk_clone`; htmx previews show a step's part of the plan as the user types. Nothing is made before
the submit."""

from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from console.core.access import OPERATOR
from console.core.errors import ServiceError
from console.core.registry import registry
from console.core.views import actor, as_uuid, role_required, task_started

from ..forms.bulk_clone import (
    Problem,
    csv_lines,
    request_until,
    service_problems,
    shape_problems,
    show,
    step_index,
    wizard_form,
    wizard_steps,
)
from ..models import VM
from ..services import vms
from ..services.bulk_clone import Plan, max_clones, pattern_names, plan_bulk_clone, request_bulk_clone

REVIEW_ROWS = 200  # the review lists this many clones, then says how many more
PICKER_SIZE = 20


@role_required(OPERATOR)
def bulk_clone_wizard(request):
    """GET: the first step (the names when `?source=` gives the source). POST: `go` is `next`, `back:STEP`
    or `submit`, from the step named by `step`."""
    if request.method != "POST":
        source = VM.objects.filter(uuid=as_uuid(request.GET.get("source"))).first()
        form = wizard_form()(initial=_initial(source))
        return _render(request, form, step_index("names") if source else 0)
    form = wizard_form()(request.POST, request.FILES)
    form.is_valid()
    current = _posted_step(request)
    go = request.POST.get("go", "next")
    last = len(wizard_steps()) - 1
    if go.startswith("back:") and go[5:] in {step.key for step in wizard_steps()}:
        return _render(request, form, min(step_index(go[5:]), current))
    if go == "submit":
        return _submit(request, form)
    problems, plan = check_until(form, min(current, last - 1))
    if problems:
        return _render(request, form, min(problem.step for problem in problems), status=400)
    return _render(request, form, min(current + 1, last), plan=plan)


def _submit(request, form):
    last = len(wizard_steps()) - 1
    problems = shape_problems(form, last)
    if not problems:
        try:
            parent = request_bulk_clone(actor(request), request_until(form, last))
        except ServiceError as error:
            problems = service_problems(form, error, last)
            show(form, problems)
        else:
            return task_started(request, parent, reverse("task-detail", args=[parent.uuid]))
    return _render(request, form, min(problem.step for problem in problems), status=400)


def check_until(form, last: int) -> tuple[list[Problem], Plan | None]:
    """The problems of steps 0..`last` (shown on the form), and the plan when it holds as a whole. A problem
    of a later step (the default placement has no room for a count just typed) waits for that step."""
    problems = [problem for problem in shape_problems(form, last) if problem.step <= last]
    if problems:
        return problems, None
    try:
        return [], plan_bulk_clone(request_until(form, last))
    except ServiceError as error:
        problems = [problem for problem in service_problems(form, error, last) if problem.step <= last]
        show(form, problems)
        return problems, None


def _initial(source: VM | None) -> dict:
    base = source.name if source else "vm"
    return {"source": source.uuid if source else None, "name_pattern": f"{base}-{{n:03}}"}


def _posted_step(request) -> int:
    keys = [step.key for step in wizard_steps()]
    key = request.POST.get("step")
    return keys.index(key) if key in keys else 0


def _source(form) -> VM | None:
    if form.is_bound:
        source = form.cleaned_data.get("source") if hasattr(form, "cleaned_data") else None
        return source or VM.objects.filter(uuid=as_uuid(form.data.get("source"))).first()
    return VM.objects.filter(uuid=as_uuid(form.initial.get("source"))).first()


def _render(request, form, index: int, status: int = 200, plan: Plan | None = None):
    steps = wizard_steps()
    step = steps[index]
    source = _source(form)
    shown = set(step.fields)
    context = {
        "form": form, "steps": steps, "step": step, "index": index, "source": source,
        "title": "Deploy VMs" if source is None or source.is_template else f"Clone {source.name} many times",
        "hidden": [form[name] for name in form.fields if name not in shown and name != "per_clone_file"],
        "option_template": registry.vm_options[step.option].template if step.option else "",
        "csv_lines": csv_lines(form) if step.per_clone else [],
        "previous": steps[index - 1] if index else None,
        "next": steps[index + 1] if index + 1 < len(steps) else None,
    }
    if step.key == "review":
        context.update(_review(plan, form))
    return render(request, "console/bulk_clone/wizard.html", context, status=status)


def _review(plan: Plan | None, form) -> dict:
    if plan is None:  # a review asked for directly: plan the whole request
        problems, plan = check_until(form, len(wizard_steps()) - 2)
        if plan is None:
            return {"plan": None}
    keys = sorted({key for clone in plan.clones for key in clone.key_values})
    options = [(entry.label or name, plan.clones[0].checked.get(name) is not None)
               for name, entry in sorted(registry.vm_options.items(), key=lambda item: item[1].order)]
    return {"plan": plan, "totals": plan.totals, "shares": sorted(plan.hosts().items()), "keys": keys,
            "clones": plan.clones[:REVIEW_ROWS], "more": max(len(plan.clones) - REVIEW_ROWS, 0),
            "options": options}


@require_POST
@role_required(OPERATOR)
def bulk_clone_preview(request):
    """A step's part of the plan, as the user types (htmx): the first and last names, the hosts' shares,
    the per-clone table read. Only problems of the fields the preview is about are shown."""
    form = wizard_form()(request.POST)
    form.is_valid()
    index = _posted_step(request)
    step = wizard_steps()[index]
    names = _pattern_names(form) if step.key == "names" else []  # before the problems are put on the form
    problems, plan = check_until(form, index)
    about = set(step.fields) - set(registry.vm_options[step.option].form.base_fields if step.option else ())
    mine = [p for p in problems if p.step == index and (p.field is None or p.field in about)]
    context = {"step": step, "plan": plan, "form": form,
               "problems": [(form.fields[p.field].label if p.field else "", p.message) for p in mine],
               "earlier": [p for p in problems if p.step < index]}
    if step.key == "names":
        context["names"] = [clone.name for clone in plan.clones] if plan else names
        context["names_free"] = not problems
    if step.key == "placement":
        context["hosts"] = _hosts(_source(form), plan)
    if step.option and plan is not None:
        entry = registry.vm_options[step.option]
        context["option"] = (entry.label or step.option, plan.clones[0].checked.get(step.option) is not None)
    if step.per_clone and plan is not None:
        context["rows"] = len(plan.clones)
        context["keys"] = sorted({key for clone in plan.clones for key in clone.key_values})
    return render(request, "console/bulk_clone/preview.html", context)


def _pattern_names(form) -> list[str]:
    """The pattern's names when the plan does not hold: a name is taken (the preview says which), or the plan
    waits on a later step (with the later steps at their defaults only the placement and the addresses are
    checked after the names, so these were found free)."""
    data = form.cleaned_data
    try:
        if 0 < data["count"] <= max_clones():
            return pattern_names(data["name_pattern"], data["start_index"], data["count"])
    except (KeyError, ServiceError):
        pass
    return []


def _hosts(source: VM | None, plan: Plan | None) -> list[tuple]:
    """(host, free memory, the plan's share) of the source's cluster's hosts."""
    if source is None:
        return []
    shares = plan.hosts() if plan else {}
    return [(host, host.memory_bytes - vms.memory_in_use(host), shares.get(host.name, 0))
            for host in source.cluster.hosts.order_by("name")]


@role_required(OPERATOR)
def bulk_clone_sources(request):
    """The source picker's choices: templates, then VMs, whose name holds the search; the chosen one first."""
    search = request.GET.get("q", "").strip()
    chosen = VM.objects.filter(uuid=as_uuid(request.GET.get("source"))).first()
    matches = VM.objects.filter(name__icontains=search).order_by("-is_template", "name").only(
        "uuid", "name", "is_template", "power_state")
    choices = ([chosen] if chosen else []) + [vm for vm in matches[:PICKER_SIZE] if vm != chosen]
    return render(request, "console/bulk_clone/sources.html", {
        "choices": choices, "chosen": chosen, "search": search, "more": max(matches.count() - PICKER_SIZE, 0)})
