"""The ready implementations of the exercises compute nothing while the probe runs the student's code.

Runs inside the student's kernel, armed by ``grading.sandbox.kernel_bootstrap`` before any student code. No
wrapper stands in front of a ready implementation: while the probe watches (``WATCH_EVENT``, sent by the probe's
``record`` from its first line to its last, so before it reads the challenge and after it writes the result),
the function objects themselves run other code, so every reference to them, however it was found (a computed
name, ``sys.modules``, a closure, a decorator's cell), reaches code that computes nothing. Their own code
objects are kept by an audit hook, which Python cannot remove; every way to run a kept code object again (a new
function, ``exec``, a copy, marshal, assigning it to another function) is refused for the life of the kernel,
and so are re-reading their modules from disk, walking the garbage collector, tracing or profiling (a trace
function sees every frame), a frame evaluation callback (torch's ``set_eval_frame``, PEP 523), another audit
hook (it would run inside this one's work and read its frame: this hook is the last one), a Python signal
handler (it runs between any two bytecodes, this hook's too, handed the interrupted frame), a subinterpreter
(it has no audit hook) and ctypes' audited calls (looking up a C function, memory at an address). The hook's
own frame, reached through the traceback of something it refused, is shown without its variables. torch's
fused optimizer kernels are refused at the dispatcher, for every route to them (``torch._fused_adam_``,
``torch.ops.aten``, ``torch._C``). An exercise is recorded once per kernel: a second run would meet the same
inputs, whose answers the student's code could have computed with the ready implementations in between.

A refused call raises ``OracleRefused`` and its name is recorded in ``ORACLES_SEEN``; torch's own layers
initializing themselves (``nn.Linear``'s constructor calls ``kaiming_uniform_``) still run.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import types
from typing import Any, Callable, Iterable

WATCH_EVENT = "course.probe.watch"  # +1 when the probe starts running an exercise's runs, -1 when it is done
# sent by the probe's record when the tripwires refused its watch (the exercise was recorded before in this
# process): the guard logs it for the grader, which scores that exercise 0 (grading.judging)
AGAIN_EVENT = "course.probe.again"
# the private functions that may send it: the probe's record, and its run of the answer cells alone, which
# watches from before their first line to the end of its process (grading.running.alone)
WATCHERS = ("record", "run_answer_cells")
ORACLE_EVENT = "course.probe.oracle"  # sent by a ready implementation while disarmed: (args, kwargs, box)
STAND_IN_EVENT = "course.stand_in"  # sent by a stand-in for a C function the hook holds: (name, args, box)
ORACLES_SEEN: set = set()  # names of the ready implementations called while the probe watched

OBJECT_WALKS = ("gc.get_objects", "gc.get_referrers", "gc.get_referents")  # audit events of the gc module
# how running code reaches a frame: refused while torch's own code runs a kept implementation for a layer
FRAME_EVENTS = ("sys._getframe", "sys._current_frames", "sys.settrace", "sys.setprofile")
# ctypes looking up C functions or wrapping memory at an address (a frame's variables, the hook's own): refused once
# armed; its cast and memmove raise no audit event
CTYPES_EVENTS = ("ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.call_function", "ctypes.cdata",
                 "ctypes.cdata/buffer", "ctypes.addressof", "ctypes.string_at", "ctypes.wstring_at")
FRAME_ATTRIBUTES = ("tb_frame", "gi_frame", "cr_frame", "ag_frame")

# the course library's ready implementations (its optimizer helpers also reach torch.optim's)
COURSE_ORACLES = {"course_lib.depth": ("orthogonal_", "lsuv_", "init_weights"),
                  "course_lib.practice": ("make_optimizer", "make_scheduler", "scheduler_factory", "schedule_values"),
                  # the property engine's references and simulated mistakes (a correct answer among them)
                  "course_lib.checks.optimizers": ("oracle", "simulate"),
                  "course_lib.checks.adamw": ("oracle", "simulate"),
                  "course_lib.checks.derivation": ("_variants", "_ratio", "_backward_product", "_relu_layer"),
                  "course_lib.checks.deeper": ("schedule_value", "expected_schedule", "_mistake")}
OPTIMIZER_MODULES = ("sgd", "adam", "adamw", "adamax", "nadam", "radam", "rmsprop", "adagrad", "adadelta", "asgd",
                     "rprop", "lbfgs", "sparse_adam", "_functional")
FUSED_KERNELS = ("_fused_adam_", "_fused_adamw_", "_fused_sgd_", "_fused_adagrad_")


class OracleRefused(RuntimeError):
    """A ready implementation of an exercise, called while the grader runs the student's code."""


def refusal(name: str) -> str:
    """What a refused ready implementation says to the student."""
    return f"{name} is not available while the grader runs your code: the exercise asks you to implement it"


def ready_implementations() -> list[tuple[types.FunctionType, str]]:
    """(function, name) of every ready implementation written in Python: every function of ``torch.optim``'s
    optimizer and scheduler classes (their bases excepted: a student's class may extend them) and of its
    optimizer modules, ``torch.nn.init``'s named initializers and ``COURSE_ORACLES``."""
    import torch.nn.init
    import torch.optim
    import torch.optim.lr_scheduler

    found: dict[int, tuple[types.FunctionType, str]] = {}

    def add(member: Any, label: str) -> None:
        fn = getattr(member, "__func__", member)  # staticmethod, classmethod
        if inspect.isfunction(fn) and id(fn) not in found:
            found[id(fn)] = (fn, label)

    schedulers = torch.optim.lr_scheduler
    for module, base in ((torch.optim, torch.optim.Optimizer), (schedulers, schedulers.LRScheduler)):
        for name, cls in vars(module).items():
            if inspect.isclass(cls) and issubclass(cls, base) and cls is not base:
                for member in vars(cls).values():
                    add(member, f"{module.__name__}.{name}")
    for module_name in OPTIMIZER_MODULES:  # the functional API, also where _functional re-exports it
        module = importlib.import_module(f"torch.optim.{module_name}")
        for fn in vars(module).values():
            if inspect.isfunction(fn) and fn.__module__ == module.__name__:
                add(fn, f"{fn.__module__}.{fn.__name__}")
    for name, fn in vars(torch.nn.init).items():
        if name.startswith(("xavier", "kaiming", "orthogonal")):
            add(fn, f"torch.nn.init.{name}")
    for module_name, names in COURSE_ORACLES.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in names:
            add(getattr(module, name), f"{module_name}.{name}")
    return list(found.values())


def oracle_sources() -> list[str]:
    """The files ready implementations are defined in (sources and bytecode): reading one would make a copy."""
    import torch.nn.init
    import torch.optim.lr_scheduler

    modules = [torch.nn.init, torch.optim.lr_scheduler]
    modules += [sys.modules[f"torch.optim.{m}"] for m in OPTIMIZER_MODULES if f"torch.optim.{m}" in sys.modules]
    modules += [sys.modules[m] for m in COURSE_ORACLES if m in sys.modules]
    files = []
    for module in modules:
        source = os.path.realpath(module.__file__)
        files.append(source)
        for level in ("", 1, 2):
            try:
                files.append(os.path.realpath(importlib.util.cache_from_source(source, optimization=level)))
            except (NotImplementedError, ValueError):
                pass
    return files


REFUSER = '''
def outer():
{cells}
    def refused(*args, **kwargs):
        if kwargs is None:  # never: names the original's closure cells, so that the code fits the function
            ({free},)
        box = []
        __import__("sys").audit({event!r}, args, kwargs, box)
        is_refused, value = box[0]
        if is_refused:
            raise value
        return value
    return refused
'''


def refuser_code(fn: types.FunctionType, label: str) -> types.CodeType:
    """Code that asks the hook what to do (refuse, or run the kept code for torch's own layers), with the
    same closure cells as ``fn``'s own, so that it can be put in place."""
    free = fn.__code__.co_freevars
    source = REFUSER.format(cells="".join(f"    {name} = None\n" for name in free) or "    pass\n",
                            free=", ".join(free) or "None", event=ORACLE_EVENT)
    namespace: dict = {}
    exec(compile(source, f"<{label}, refused while graded>", "exec"), namespace)
    return namespace["outer"]().__code__


def _held_functions() -> dict[str, tuple[types.ModuleType, str]]:
    """C functions that would let Python code run where the hook cannot judge it, by label: (module, name).

    torch's ``set_eval_frame`` (PEP 523: a callback before every frame, which may run other code in its
    place), ``_signal.signal`` (a Python signal handler runs between any two bytecodes, the hook's too, and
    is handed the interrupted frame) and ``_imp.create_builtin`` (a fresh ``_signal`` or ``_imp`` module
    brings fresh originals of the others)."""
    import _imp
    import _signal

    import torch

    held = {"_signal.signal": (_signal, "signal"), "_imp.create_builtin": (_imp, "create_builtin")}
    eval_frame = getattr(getattr(torch._C, "_dynamo", None), "eval_frame", None)
    if getattr(eval_frame, "set_eval_frame", None) is not None:
        held["set_eval_frame"] = (eval_frame, "set_eval_frame")
    return held


def _stand_in(label: str) -> types.FunctionType:
    """A Python function that asks the hook (``STAND_IN_EVENT``) to call the C function ``label`` for it
    (``_imp.create_builtin`` hands over the spec's name only, read here: the hook reads no student object)."""
    audit, event = sys.audit, STAND_IN_EVENT

    name_only = label == "_imp.create_builtin"

    def stand_in(*args):
        box: list = []
        audit(event, label, (args[0].name,) if name_only else args, box)
        return box[0]

    stand_in.__name__ = stand_in.__qualname__ = label.rpartition(".")[2]
    return stand_in


def arm_tripwires(private_functions: Iterable[types.FunctionType] = ()) -> list[str]:
    """Install the hook (it cannot be removed) that disarms every ready implementation while the probe
    watches; ``private_functions`` (the probe's own) may only ever run as themselves. Return the names armed.

    While ``WATCH_EVENT`` is above zero, each ready implementation runs a refuser that raises
    ``OracleRefused``, but for torch's layers initializing themselves (``reset_parameters``), for which the hook
    runs the kept code; the fused kernels are refused at the dispatcher. Always refused once armed: running a
    kept code object or a private function's code anew, re-reading the implementations' modules, walking the
    garbage collector, other threads' frames, tracing and profiling. The hook's own frame, reached through the
    traceback of something it refused, is shown without its variables."""
    import _thread
    import gc
    import signal as signal_module

    import torch
    import torch.nn

    # Everything the hook uses is bound here, as plain tuples, frozensets and C functions: the student's code can
    # rewrite this module's names, classes and builtins, and must not get to run inside the hook.
    oracles = tuple((fn, fn.__code__, refuser_code(fn, label), label) for fn, label in ready_implementations())
    by_refuser = types.MappingProxyType({id(o[2]): o for o in oracles})
    watch_codes = frozenset(id(fn.__code__) for fn in private_functions if fn.__name__ in WATCHERS)
    private_codes = tuple(fn.__code__ for fn in private_functions)  # held, so that their ids stay theirs
    kept = tuple(o[1] for o in oracles) + tuple(o[2] for o in oracles) + private_codes
    kept_ids = frozenset(id(c) for c in kept)
    kept_names = frozenset((c.co_filename, c.co_name) for c in kept)
    kept_bytecode = frozenset(c.co_code for c in kept)  # a copy under another name keeps it
    internal = tuple(method.__code__ for cls in vars(torch.nn).values() if inspect.isclass(cls)
                     and issubclass(cls, torch.nn.Module) for name in ("reset_parameters", "_reset_parameters")
                     if inspect.isfunction(vars(cls).get(name)) for method in (vars(cls)[name],))
    internal_ids = frozenset(id(c) for c in internal)
    sources = oracle_sources()
    protected_files = frozenset((st.st_dev, st.st_ino) for st in (os.stat(f) for f in sources if os.path.exists(f)))
    protected_names = frozenset(os.path.basename(f) for f in sources)
    fused = tuple((name if overload == "default" else f"{name}.{overload}", f"torch.{name}")
                  for name in FUSED_KERNELS if hasattr(torch.ops.aten, name)
                  for overload in getattr(torch.ops.aten, name).overloads())
    labels = {o[3] for o in oracles} | {label for _, label in fused} | set(OBJECT_WALKS)
    messages = types.MappingProxyType({label: refusal(label) for label in labels})
    dispatch_library, new_exception = torch._C._dispatch_library, BaseException.__new__
    seen, refused_type, refuse, type_, id_, len_ = ORACLES_SEEN, OracleRefused, PermissionError, type, id, len
    get_ident, getframe, stat = _thread.get_ident, sys._getframe, os.stat
    oracle_event, watch_event, walks = ORACLE_EVENT, WATCH_EVENT, frozenset(OBJECT_WALKS)
    frame_events, frame_attributes = frozenset(FRAME_EVENTS), frozenset(FRAME_ATTRIBUTES)
    # a trace or profile function sees (and rewrites) every frame, the probe's included; other threads' frames
    always_refused = frozenset({"sys.settrace", "sys.setprofile", "sys._current_frames"})
    traceback_type, frame_clear = types.TracebackType, types.FrameType.clear
    own_code: list = []  # the hook's code: its frames, reached through a refusal's traceback, lose their variables
    code_type, containers, function_type = types.CodeType, (tuple, list, set, frozenset), types.FunctionType
    str_, bytes_, dict_, list_, int_, path_errors = str, bytes, dict, list, int, (OSError, ValueError)
    handled = frozenset({WATCH_EVENT, ORACLE_EVENT, STAND_IN_EVENT, "sys.addaudithook",
                         "cpython.PyInterpreterState_New", "function.__new__",
                         "exec", "code.__new__", "marshal.dumps", "object.__setattr__", "object.__getattr__", "open",
                         "os.link", "os.symlink", *OBJECT_WALKS, *FRAME_EVENTS, *CTYPES_EVENTS})
    # another audit hook would run inside this one's work (a code swap raises an event) and read its frame
    never_message = types.MappingProxyType({
        "sys.addaudithook": "audit hooks cannot be added in a graded notebook",
        # a subinterpreter has no audit hook: it would read the implementations' sources
        "cpython.PyInterpreterState_New": "subinterpreters are not available in a graded notebook",
        **{event: "ctypes is not available in a graded notebook" for event in CTYPES_EVENTS},
        **{event: "other frames than your own are not reachable in a graded notebook" for event in always_refused}})
    never_inside = frozenset(never_message)
    busy: set = set()  # threads inside the hook: its own attribute reads and calls are not judged again
    state = {"depth": 0, "internal": 0, "dispatch": None}
    watched: set = set()  # exercises recorded in this kernel: each once, so its inputs never meet a second run
    gc_enabled, gc_disable, gc_enable = gc.isenabled, gc.disable, gc.enable
    held = {label: getattr(module, name) for label, (module, name) in _held_functions().items()}
    stand_ins = {label: _stand_in(label) for label in held}
    stand_in_event, stand_in_codes = STAND_IN_EVENT, frozenset(id(f.__code__) for f in stand_ins.values())
    # the only signal handlers: SIG_DFL, SIG_IGN and Python's KeyboardInterrupt (the kernel switches between them)
    default_int_handler, handlers_type = signal_module.default_int_handler, signal_module.Handlers
    signals_type, namespace, tuple_, bool_ = signal_module.Signals, types.SimpleNamespace, tuple, bool
    fresh_refused = frozenset({"_signal", "_imp"})

    def refuse_fused(label: str) -> Callable:
        message = messages[label]

        def refused(*args, **kwargs):
            seen.add(label)
            raise new_exception(refused_type, message)

        return refused

    fused_refusers = tuple((qualname, refuse_fused(label)) for qualname, label in fused)

    def hook(event: str, args: tuple) -> None:
        if event not in handled:
            return
        if event in never_inside:  # whoever asks, even inside the hook (whose own work raises none of these)
            raise refuse(never_message[event])
        me = get_ident()
        if me in busy:
            return
        busy.add(me)
        collecting = gc_enabled()  # no collection inside the hook: it would run finalizers, the student's too
        gc_disable()
        try:
            if event == oracle_event:
                caller = getframe(1)
                oracle = by_refuser.get(id_(caller.f_code))
                if oracle is None or oracle[2] is not caller.f_code or type_(args[2]) is not list_:
                    raise refuse("course.probe.oracle: reserved to the grader")
                call_args, call_kwargs, box = args
                outer = caller.f_back
                if outer is None or id_(outer.f_code) not in internal_ids:
                    seen.add(oracle[3])
                    box.append((True, new_exception(refused_type, messages[oracle[3]])))
                    return
                fn = oracle[0]  # torch's layer initializing itself: the kept code, no frame reachable meanwhile
                kept_fn = function_type(oracle[1], fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
                kept_fn.__kwdefaults__ = fn.__kwdefaults__
                busy.discard(me)
                state["internal"] += 1
                try:
                    box.append((False, kept_fn(*call_args, **call_kwargs)))
                finally:
                    state["internal"] -= 1
                    busy.add(me)
            elif event == watch_event:
                if (id_(getframe(1).f_code) not in watch_codes or len_(args) != 2 or type_(args[0]) is not int_
                        or type_(args[1]) is not str_):
                    raise refuse("course.probe.watch: reserved to the grader")
                step, exercise = args
                if step == 1:
                    if exercise in watched:
                        raise refuse(f"{exercise} was recorded already in this kernel")
                    watched.add(exercise)
                state["depth"] += step
                if step == 1 and state["depth"] == 1:
                    for oracle in oracles:
                        oracle[0].__code__ = oracle[2]
                    state["dispatch"] = handle = dispatch_library("IMPL", "aten", "", "<grading tripwires>", 0)
                    for qualname, refused in fused_refusers:
                        handle.impl(qualname, "CPU", refused, False)
                        handle.impl(qualname, "CUDA", refused, False)
                elif step == -1 and state["depth"] == 0:
                    for oracle in oracles:
                        oracle[0].__code__ = oracle[1]
                    state["dispatch"].reset()
                    state["dispatch"] = None
            elif event in walks:
                if state["depth"]:
                    seen.add(event)
                    raise new_exception(refused_type, messages[event])
                raise refuse("walking the garbage collector is not available in a graded notebook")
            elif event == "function.__new__" or event == "exec":
                if id_(args[0]) in kept_ids:
                    raise refuse("this code runs only as the function it belongs to")
            elif event == "code.__new__":
                if ((type_(args[0]) is bytes_ and args[0] in kept_bytecode)
                        or (type_(args[1]) is str_ and type_(args[2]) is str_ and (args[1], args[2]) in kept_names)):
                    raise refuse("a ready implementation's code is not copied in a graded notebook")
            elif event == "marshal.dumps":
                pending, looked = [args[0]], 0
                while pending and looked < 100000:  # a kept code object, or one inside: what marshal would copy
                    value = pending.pop()
                    looked += 1
                    kind = type_(value)
                    if id_(value) in kept_ids:
                        raise refuse("a ready implementation's code is not copied in a graded notebook")
                    if kind is code_type:
                        pending.extend(value.co_consts)
                    elif kind in containers:
                        pending.extend(value)
                    elif kind is dict_:
                        pending.extend(dict_.keys(value))
                        pending.extend(dict_.values(value))
            elif event == stand_in_event:
                if (id_(getframe(1).f_code) not in stand_in_codes or len_(args) != 3 or type_(args[1]) is not tuple_
                        or type_(args[2]) is not list_ or type_(args[0]) is not str_ or args[0] not in held):
                    raise refuse("course.stand_in: reserved to the grader")
                label, call, box = args
                if label == "set_eval_frame":  # None, False: torch switching it off
                    if len_(call) != 1 or (call[0] is not None and type_(call[0]) is not bool_):
                        raise refuse("a frame evaluation callback (torch.compile's) is not available in a graded "
                                     "notebook")
                elif label == "_signal.signal":  # no student object reaches the C function: it would run here
                    handler = call[1] if len_(call) == 2 else None
                    handler = int_(handler) if type_(handler) is handlers_type else handler
                    if (len_(call) != 2 or not (type_(call[0]) is int_ or type_(call[0]) is signals_type)
                            or not (handler is default_int_handler or (type_(handler) is int_ and 0 <= handler <= 1))):
                        raise refuse("a Python signal handler is not available in a graded notebook")
                    call = (int_(call[0]), handler)
                else:  # _imp.create_builtin: the name read by the stand-in, a plain namespace handed over
                    if len_(call) != 1 or type_(call[0]) is not str_ or call[0] in fresh_refused:
                        raise refuse("a fresh copy of this module is not available in a graded notebook")
                    call = (namespace(name=call[0]),)
                box.append(held[label](*call))
            elif event == "object.__setattr__":
                if len_(args) > 2 and type_(args[1]) is str_ and args[1] == "__code__" and id_(args[2]) in kept_ids:
                    raise refuse("this code runs only as the function it belongs to")
            elif event == "object.__getattr__":
                name = args[1] if len_(args) > 1 and type_(args[1]) is str_ else None
                if name in frame_attributes and state["internal"]:
                    raise refuse("no frame is reachable while torch initializes a layer")
                if name == "tb_frame" and type_(args[0]) is traceback_type:
                    frame = args[0].tb_frame  # the hook's own, when it refused something: shown without its variables
                    if frame.f_code is own_code[0]:
                        try:
                            frame_clear(frame)
                        except RuntimeError:  # still running: its variables are live
                            raise refuse("the grader's own frame is not reachable in a graded notebook") from None
            elif event in frame_events:
                if state["internal"]:
                    raise refuse("other frames than your own are not reachable in a graded notebook")
            elif len_(args) and type_(args[0]) in (str_, bytes_):  # open, os.link, os.symlink
                text = args[0] if type_(args[0]) is str_ else bytes_.decode(args[0], "utf-8", "surrogateescape")
                if not (str_.endswith(text, ".py") or str_.endswith(text, ".pyc")):
                    return
                named = str_.rpartition(text, "/")[2] in protected_names
                if named and not str_.startswith(text, "/"):  # relative, maybe to a descriptor of torch's folder
                    raise refuse("a ready implementation's source is not read in a graded notebook")
                try:
                    st = stat(text)
                except path_errors:
                    return
                if (st.st_dev, st.st_ino) in protected_files:
                    raise refuse("a ready implementation's source is not read in a graded notebook")
        finally:
            if collecting:
                gc_enable()
            busy.discard(me)

    own_code.append(hook.__code__)
    sys.addaudithook(hook)
    replaced = {id(f): (f, stand_ins[label]) for label, f in held.items()}
    for module in list(sys.modules.values()):  # the module that defines each, and any that imported it by name
        names = getattr(module, "__dict__", None)
        for name, value in list(names.items()) if type(names) is dict else ():
            pair = replaced.get(id(value))
            if pair is not None and pair[0] is value:
                names[name] = pair[1]
    return sorted({o[3] for o in oracles} | {label for _, label in fused})


__all__ = ["arm_tripwires", "refusal", "OracleRefused", "ORACLES_SEEN", "WATCH_EVENT", "AGAIN_EVENT",
           "ready_implementations"]
