"""Review flags: what a human should look at in a submission, as short labels with the cell index.

Only what the student changed is looked at: code cells whose source is some release cell's are
skipped, and so are findings on a line that appears as such in the release (the Colab set-up cell's
``sys.modules`` check, the given imports). Locked cells are skipped too (nbgrader puts the release's
source back). Each cell is parsed with ``ast``, after IPython's ``TransformerManager`` has turned magics
into calls (``!ls`` -> ``get_ipython().system("ls")``) when plain Python does not parse; a cell that
still does not parse is searched with regular expressions instead. Work is bounded: a changed cell
over ``MAX_CELL_CHARS`` (or past ``MAX_TOTAL_CHARS`` in the notebook) is flagged as too large to
check. Names are resolved through the notebook's imports and simple
assignments (``import sys as s; s._getframe`` is ``sys._getframe``), string expressions built from
constants are folded (``"gra" + "ding"``, ``"".join([...])``, ``chr(...)``, ``[::-1]``, base64), and
``getattr(x, "name")`` / ``__import__("name")`` with literal names read as attribute access and imports.

Delegation flags (``delegation_label``) are raised when an exercise cell (an answer cell, or any cell that
rebinds an exercise's name such as ``Adam``) reaches a ready implementation of an exercise, by any dotted
path: ``torch.optim`` (its classes, functional API and ``lr_scheduler``, also as ``x.torch.optim`` through
another module), torch's fused optimizer kernels (``torch._fused_adam_`` and the like, ``torch.ops.aten``
included), ``torch.nn.init``'s named initializers (``xavier_*``, ``kaiming_*``, ``orthogonal_``: the
samplers ``normal_`` and ``uniform_`` are allowed), and the course library's modules that build
optimizers or initialize networks (``DELEGATED_COURSE_MODULES``). A flag changes no points: at run time the
probe's tripwires (``grading.sandbox.probe.arm_tripwires``) refuse those implementations while the
student's code runs, so an exercise that reaches them computes nothing.
"""

from __future__ import annotations

import ast
import base64
import binascii
import re
from typing import Iterable, Iterator, Mapping, Optional

from nbformat import NotebookNode

from grading.course import EXERCISES, is_locked, is_solution
from grading.intake.python_source import as_python, parse

DELEGATION_TEMPLATE = "delegates to {} (not allowed; see the instructor docs)"
DELEGATED_INITIALIZERS = ("xavier_", "kaiming_", "orthogonal")  # torch.nn.init's named initializers
DELEGATED_KERNELS = ("_fused_adam", "_fused_sgd", "_fused_adagrad")  # torch's fused optimizer steps
# course_lib modules that hand out optimizers or initialize whole networks, and the property engine (its
# references and simulated mistakes compute the exercises)
DELEGATED_COURSE_MODULES = ("depth", "explorer", "practice", "deeper_runs", "checks")


def delegation_label(name: str) -> Optional[str]:
    """The delegation flag for a resolved dotted name, or None (``torch.nn.init.normal_`` is a sampler)."""
    parts = name.split(".")
    if parts[0] == "course_lib" and len(parts) > 1 and parts[1] in DELEGATED_COURSE_MODULES:
        return DELEGATION_TEMPLATE.format(f"course_lib.{parts[1]}")
    if "torch" not in parts:
        return None
    after = parts[parts.index("torch") + 1:]
    if "optim" in after:
        return DELEGATION_TEMPLATE.format("torch.optim")
    kernel = next((p for p in after if p.startswith(DELEGATED_KERNELS)), None)
    if kernel:
        return DELEGATION_TEMPLATE.format(f"torch's fused optimizer kernels ({kernel})")
    if "init" in after:
        initializer = next((p for p in after if p.startswith(DELEGATED_INITIALIZERS)), None)
        if initializer:
            return DELEGATION_TEMPLATE.format(f"torch.nn.init.{initializer}")
    return None


DELEGATION = delegation_label("torch.optim")
DELEGATION_INIT = delegation_label("torch.nn.init.orthogonal_")
DELEGATION_DEPTH = delegation_label("course_lib.depth")
HIDDEN_WORDS = ("nbgrader", "grading", "probe", "torch.optim", "getframe", "builtins", "sys.modules",
                "__import__", "ctypes", "subprocess", "socket", "f_back", "f_globals", "f_locals", "__code__")
# a module or path of the grader in a string literal ("grading.sandbox.probe", "/grading/results"), not prose
GRADER_STRING = re.compile(r"\bnbgrader\b|course_grading|(?<![a-z])grading(?=[./])|/grading\b", re.IGNORECASE)
DEFAULT_ALIASES = {"np": "numpy", "nn": "torch.nn", "F": "torch.nn.functional"}
MONITORED_ROOTS = ("torch", "numpy", "course_lib", "random", "math", "IPython", "sys", "os")
ALLOWED_ASSIGNMENTS = ("torch.backends.",)
MAX_CELL_CHARS = 200_000  # larger changed cells are flagged as unchecked
MAX_FLAGS = 20  # per submission: then a count
MAX_TOTAL_CHARS = 2_000_000  # per notebook; cells past it are flagged as unchecked
MAX_CHECKED_CELLS = 5_000  # per notebook, likewise (a flood of tiny cells)
MAX_TRANSFORM_CHARS = 50_000  # IPython's TransformerManager is slow (about 10 us a character)
EXERCISE_NAMES = frozenset(e.name for exercises in EXERCISES.values() for e in exercises)

LABELS = {
    "grader": "uses the grader's modules (grading/nbgrader)",
    "import": "imports a module by a computed name",
    "attr": "getattr/setattr/delattr with a computed name",
    "setattr": "sets attributes through type/object.__setattr__",
    "frames": "inspects stack frames (sys._getframe, inspect, f_back/f_globals/f_locals)",
    "internals": "touches function or class internals (__code__, __globals__, __subclasses__)",
    "gc": "walks the garbage collector (gc.get_objects/get_referrers)",
    "modules": "touches sys.modules",
    "builtins": "touches builtins",
    "ipython": "hooks IPython (get_ipython events/transformers/run_cell)",
    "hooks": "installs interpreter hooks (sys.displayhook/settrace/excepthook)",
    "exit": "exits or kills the process (os._exit/os.kill)",
    "ctypes": "uses ctypes",
    "fd": "writes to file descriptors or /proc/self",
    "commands": "runs commands or opens sockets",
    "exec": "runs code from a string (exec/eval/compile)",
    "paths": "opens absolute or parent paths",
    "writefile": "writes a file with %%writefile",
    "source": "reads code objects or source (inspect.getsource, dis)",
}

FRAME_NAMES = ("sys._getframe", "sys._current_frames", "inspect.currentframe", "inspect.stack", "inspect.trace",
               "inspect.getouterframes", "inspect.getinnerframes", "inspect.getframeinfo", "traceback.walk_stack")
FRAME_ATTRS = {"f_back", "f_globals", "f_locals", "f_builtins", "f_code", "tb_frame", "gi_frame", "cr_frame",
               "ag_frame"}
INTERNAL_ATTRS = {"__code__", "__globals__", "__closure__", "__subclasses__", "__bases__", "__mro__",
                  "__builtins__", "__kwdefaults__", "__defaults__"}
SOURCE_NAMES = ("inspect.getsource", "inspect.getsourcelines", "inspect.getfile", "inspect.getmodule",
                "inspect.getmembers", "dis.", "linecache.")
GC_NAMES = ("gc.get_objects", "gc.get_referrers", "gc.get_referents")
HOOK_NAMES = ("sys.displayhook", "sys.excepthook", "sys.settrace", "sys.setprofile", "sys.addaudithook",
              "sys.breakpointhook", "sys.unraisablehook", "threading.settrace", "threading.setprofile",
              "builtins.print")
IPYTHON_SAFE = {"run_line_magic", "run_cell_magic", "system", "getoutput"}
EXIT_NAMES = ("os._exit", "os.kill", "os.killpg", "os.abort", "signal.")
FD_NAMES = ("os.write", "os.writev", "os.pwrite", "os.dup", "os.dup2", "os.fdopen", "os.open", "os.sendfile",
            "os.openpty", "os.set_inheritable", "sys.__stdout__.buffer.raw", "io.FileIO")
COMMAND_ROOTS = ("subprocess", "socket", "pty", "urllib", "requests", "http", "ftplib", "smtplib", "telnetlib",
                 "asyncio.create_subprocess", "pexpect", "paramiko")
COMMAND_NAMES = ("os.system", "os.popen", "os.exec", "os.spawn", "os.fork", "os.posix_spawn", "os.startfile",
                 "get_ipython().system", "get_ipython().getoutput")
SHELL_MAGICS = {"system", "sx", "bash", "sh", "script", "pip", "conda", "perl", "ruby", "python", "python3", "pypy"}
PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "debug"}
IMPORTERS = {"__import__", "builtins.__import__", "importlib.import_module", "importlib.__import__"}
ATTR_FUNCS = {"getattr", "setattr", "delattr", "builtins.getattr", "builtins.setattr", "builtins.delattr"}
EXEC_FUNCS = {"exec", "eval", "compile", "builtins.exec", "builtins.eval", "builtins.compile"}
GET_IPYTHON = {"get_ipython", "IPython.get_ipython", "IPython.core.getipython.get_ipython"}

REGEXES = {  # for cells that do not parse
    "grader": r"\b(nb)?grading\b|nbgrader",
    "frames": r"_getframe|currentframe|\bf_back\b|\bf_globals\b|\bf_locals\b|inspect\.stack",
    "internals": r"__code__|__globals__|__subclasses__",
    "source": r"inspect\.getsource|\bdis\.",
    "gc": r"\bgc\.get_(objects|referrers|referents)",
    "modules": r"sys\.modules",
    "builtins": r"\bbuiltins\b|__builtins__",
    "ipython": r"get_ipython|\.events\b|ast_transformers|input_transformers",
    "setattr": r"__setattr__",
    "attr": r"\b(get|set|del)attr\s*\(",
    "import": r"__import__|import_module",
    "exit": r"os\._exit|os\.kill",
    "ctypes": r"\bctypes\b",
    "fd": r"os\.(write|dup2?|fdopen|open)\b|/proc/self|/dev/fd",
    "commands": r"\bsocket\b|\burllib\b|\brequests\b|\bsubprocess\b|os\.system|os\.popen|^\s*!",
    "exec": r"\b(exec|eval|compile)\s*\(",
}


def _root_in(name: str, roots: Iterable[str]) -> bool:
    return any(name == r or name.startswith(r + ".") or (r.endswith(".") and name.startswith(r)) for r in roots)


def _starts(name: str, prefixes: Iterable[str]) -> bool:
    return any(name.startswith(p) for p in prefixes)


def _fold(node: ast.AST) -> Optional[str]:
    """The constant string an expression always evaluates to, or None."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _fold(node.left), _fold(node.right)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        text = _fold(node.left)
        count = node.right.value if isinstance(node.right, ast.Constant) else None
        return text * count if text is not None and isinstance(count, int) and 0 <= count <= 100 else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        text = _fold(node.left)
        items = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
        values = [_fold(e) for e in items]
        if text is None or None in values:
            return None
        try:
            return text % tuple(values)
        except (TypeError, ValueError):
            return None
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            inner = value.value if isinstance(value, ast.FormattedValue) else value
            text = _fold(inner)
            if text is None:
                return None
            parts.append(text)
        return "".join(parts)
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
        text = _fold(node.value)
        bounds = [_int(getattr(node.slice, k)) for k in ("lower", "upper", "step")]
        if text is None or any(b is False for b in bounds):
            return None
        return text[slice(*bounds)]
    if isinstance(node, ast.Call):
        return _fold_call(node)
    return None


def _int(node: Optional[ast.AST]):
    """An int constant (negative allowed), None for an absent bound, False otherwise."""
    if node is None:
        return None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _int(node.operand)
        return -value if isinstance(value, int) and value is not False else False
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, int) else False


def _fold_call(node: ast.Call) -> Optional[str]:
    func = node.func
    if isinstance(func, ast.Name) and func.id == "chr" and len(node.args) == 1:
        code = _int(node.args[0])
        return chr(code) if isinstance(code, int) and code is not False and 0 <= code < 0x110000 else None
    if isinstance(func, ast.Name) and func.id == "str" and len(node.args) == 1:
        return _fold(node.args[0])
    if not isinstance(func, ast.Attribute):
        return None
    if func.attr == "join" and len(node.args) == 1 and isinstance(node.args[0], (ast.List, ast.Tuple)):
        sep = _fold(func.value)
        parts = [_fold(e) for e in node.args[0].elts]
        return sep.join(parts) if sep is not None and None not in parts else None  # type: ignore[arg-type]
    if func.attr in ("lower", "upper", "strip", "title", "swapcase") and not node.args:
        text = _fold(func.value)
        return getattr(text, func.attr)() if text is not None else None
    if func.attr == "replace" and len(node.args) == 2:
        text, old, new = _fold(func.value), _fold(node.args[0]), _fold(node.args[1])
        return text.replace(old, new) if None not in (text, old, new) else None  # type: ignore[union-attr]
    if func.attr == "format" and not node.keywords:
        text, values = _fold(func.value), [_fold(a) for a in node.args]
        if text is None or None in values:
            return None
        try:
            return text.format(*values)
        except (IndexError, KeyError, ValueError):
            return None
    if func.attr == "decode":
        data = _fold_bytes(func.value)
        return data.decode("utf-8", "replace") if data is not None else None
    return None


def _fold_bytes(node: ast.AST) -> Optional[bytes]:
    if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
        return node.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("bytes", "bytearray"):
        if len(node.args) == 1 and isinstance(node.args[0], (ast.List, ast.Tuple)):
            values = [_int(e) for e in node.args[0].elts]
            if all(isinstance(v, int) and v is not False and 0 <= v < 256 for v in values):
                return bytes(values)  # type: ignore[arg-type]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
        if node.func.attr in ("b64decode", "b32decode", "b16decode", "urlsafe_b64decode"):
            arg = node.args[0]
            raw = _fold(arg)
            raw_bytes = raw.encode() if raw is not None else _fold_bytes(arg)
            if raw_bytes is not None:
                try:
                    return getattr(base64, node.func.attr)(raw_bytes)
                except (binascii.Error, ValueError):
                    return None
        if node.func.attr == "encode":
            text = _fold(node.func.value)
            return text.encode() if text is not None else None
    return None


class _Resolver:
    """Dotted names of expressions, through the notebook's import aliases."""

    def __init__(self, aliases: Mapping[str, str]):
        self.aliases = aliases

    def name(self, node: ast.AST) -> Optional[str]:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.name(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Subscript):
            return self.name(node.value)
        if isinstance(node, ast.Call):
            func = self.name(node.func)
            if func in GET_IPYTHON:
                return "get_ipython()"
            literal = _fold(node.args[1]) if len(node.args) >= 2 else None
            if func in ("getattr", "builtins.getattr") and literal is not None:
                base = self.name(node.args[0])
                return f"{base}.{literal}" if base else None
            literal = _fold(node.args[0]) if node.args else None
            if func in IMPORTERS and literal is not None:
                return literal
        return None


def _aliases(trees: Iterable[ast.AST]) -> dict[str, str]:
    """Names bound to modules and module attributes by imports and simple assignments, anywhere."""
    aliases = dict(DEFAULT_ALIASES)
    assignments = []
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        root = alias.name.split(".")[0]
                        aliases[root] = root
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                assignments.append((node.targets[0].id, node.value))
    for _ in range(3):  # chains of assignments
        resolver = _Resolver(aliases)
        for target, value in assignments:
            name = resolver.name(value)
            if name and (name == "get_ipython()" or _root_in(name, MONITORED_ROOTS + COMMAND_ROOTS
                                                                + ("gc", "inspect", "builtins", "ctypes",
                                                                   "grading", "nbgrader", "importlib"))):
                aliases[target] = name
    return aliases


class _Visitor(ast.NodeVisitor):
    """Findings (line, label) of one cell's syntax tree."""

    def __init__(self, resolver: _Resolver, exercise: bool):
        self.resolve = resolver.name
        self.exercise = exercise
        self.found: list[tuple[int, str]] = []

    def add(self, node: ast.AST, key: str) -> None:
        self.found.append((getattr(node, "lineno", 0), LABELS.get(key, key)))

    def check_name(self, node: ast.AST, name: str) -> None:
        """Flags for a dotted name used (read, called or imported)."""
        if _root_in(name, ("grading", "nbgrader")):
            self.add(node, "grader")
        if _starts(name, FRAME_NAMES):
            self.add(node, "frames")
        if _starts(name, GC_NAMES):
            self.add(node, "gc")
        if _starts(name, SOURCE_NAMES):
            self.add(node, "source")
        if _root_in(name, ("sys.modules",)):
            self.add(node, "modules")
        if _root_in(name, ("builtins", "__builtins__", "__builtin__")):
            self.add(node, "builtins")
        if _starts(name, HOOK_NAMES):
            self.add(node, "hooks")
        if _starts(name, EXIT_NAMES):
            self.add(node, "exit")
        if _root_in(name, ("ctypes", "_ctypes")):
            self.add(node, "ctypes")
        if any(name == n or name.startswith(n + ".") for n in FD_NAMES):
            self.add(node, "fd")
        if _root_in(name, COMMAND_ROOTS) or _starts(name, COMMAND_NAMES):
            self.add(node, "commands")
        if name.startswith("get_ipython()."):
            attr = name.split(".")[1]
            if attr not in IPYTHON_SAFE:
                self.add(node, "ipython")
        if name in ("type.__setattr__", "object.__setattr__", "type.__delattr__", "object.__delattr__"):
            self.add(node, "setattr")
        label = delegation_label(name) if self.exercise else None
        if label:
            self.add(node, label)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.check_name(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            self.check_name(node, f"{node.module or ''}.{alias.name}".lstrip("."))

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in ("__builtins__", "__builtin__"):
            self.add(node, "builtins")
        name = self.resolve(node)
        if name and name != node.id:
            self.check_name(node, name)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in FRAME_ATTRS:
            self.add(node, "frames")
        if node.attr in INTERNAL_ATTRS:
            self.add(node, "internals")
        if node.attr in ("__setattr__", "__delattr__"):
            base = node.value
            is_super = isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super"
            if not is_super:
                self.add(node, "setattr")
        name = self.resolve(node)
        if name:
            self.check_name(node, name)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = self.resolve(node.func) or ""
        first = node.args[0] if node.args else None
        if func in IMPORTERS:
            literal = _fold(first) if first is not None else None
            if literal is None:
                self.add(node, "import")
            else:
                self.check_name(node, literal)
        if func in ATTR_FUNCS and len(node.args) >= 2:
            literal = _fold(node.args[1])
            on_self = isinstance(node.args[0], ast.Name) and node.args[0].id == "self"
            if literal is None and not on_self:  # setattr(self, key, value) is an ordinary idiom
                self.add(node, "attr")
            elif func.endswith(("setattr", "delattr")):
                self._assigned(node, node.args[0], literal)
            target = self.resolve(node.args[0])
            if target and literal is not None:
                self.check_name(node, f"{target}.{literal}")
        if func in EXEC_FUNCS:
            self.add(node, "exec")
        if func in ("open", "io.open", "builtins.open") and first is not None:
            self._opened(node, first)
        if func in ("get_ipython().run_line_magic", "get_ipython().run_cell_magic") and first is not None:
            magic = _fold(first)
            if magic in SHELL_MAGICS:
                self.add(node, "commands")
            elif magic == "writefile":
                self.add(node, "writefile")
            elif magic is None:
                self.add(node, "ipython")
        self.generic_visit(node)

    def _opened(self, node: ast.Call, first: ast.AST) -> None:
        if isinstance(first, ast.Constant) and isinstance(first.value, int):
            self.add(node, "fd")
            return
        path = _fold(first)
        if path is None:
            return
        if path.startswith(("/proc/self", "/dev/fd", "/proc/thread-self")) or re.match(r"/proc/\d+/fd", path):
            self.add(node, "fd")
        elif path.startswith("/") or path.startswith("..") or "/../" in path:
            self.add(node, "paths")

    def _assigned(self, node: ast.AST, target: ast.AST, attr: Optional[str] = None) -> None:
        name = self.resolve(target)
        if not name:
            return
        name = f"{name}.{attr}" if attr else name
        if _root_in(name, MONITORED_ROOTS) and "." in name and not _starts(name, ALLOWED_ASSIGNMENTS):
            root = name.split(".")[0]
            self.add(node, f"monkeypatches {root} ({name})")

    def _targets(self, node: ast.AST, targets: Iterable[ast.AST]) -> None:
        for target in targets:
            if isinstance(target, (ast.Tuple, ast.List)):
                self._targets(node, target.elts)
            elif isinstance(target, (ast.Attribute, ast.Subscript)):
                self._assigned(node, target)

    def visit_Assign(self, node: ast.Assign) -> None:
        self._targets(node, node.targets)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._targets(node, [node.target])
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._targets(node, [node.target])
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        self._targets(node, node.targets)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and GRADER_STRING.search(node.value):
            self.add(node, "grader")

    def _folded(self, node: ast.AST) -> None:
        text = _fold(node)
        if text is None:
            text_bytes = _fold_bytes(node)
            text = text_bytes.decode("utf-8", "replace") if text_bytes is not None else None
        if text is not None:
            lowered = text.lower()
            for word in HIDDEN_WORDS:
                if word in lowered:
                    self.add(node, f"builds the name '{word}' from pieces")
                    break
            if GRADER_STRING.search(text):
                self.add(node, "grader")
            if self.exercise and "torch.optim" in lowered:
                self.add(node, DELEGATION)
            elif self.exercise and any(k in lowered for k in DELEGATED_KERNELS):
                kernel = re.search("(?:" + "|".join(DELEGATED_KERNELS) + r")\w*", lowered).group()
                self.add(node, DELEGATION_TEMPLATE.format(f"torch's fused optimizer kernels ({kernel})"))

    def visit_BinOp(self, node: ast.BinOp) -> None:
        self._folded(node)
        self.generic_visit(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        if any(isinstance(v, ast.FormattedValue) for v in node.values):
            self._folded(node)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.slice, ast.Slice):
            self._folded(node)
        self.generic_visit(node)

    def generic_visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.Call):
            self._folded(node)
        super().generic_visit(node)


def _cell_body(source: str) -> tuple[str, int]:
    """The Python of a cell and the line offset of its body (a %%time-like cell magic runs its body)."""
    lines = source.splitlines()
    if lines and lines[0].startswith("%%"):
        magic = lines[0][2:].split()[0] if lines[0][2:].split() else ""
        if magic in PYTHON_CELL_MAGICS:
            return "\n".join(lines[1:]), 1
    return source, 0


def _parse(source: str) -> Optional[tuple[ast.AST, int]]:
    """(tree, line offset) of a cell, line numbers kept where magics transform line by line; None: no parse."""
    body, offset = _cell_body(source)
    attempts = [body] + ([as_python(body)] if len(body) <= MAX_TRANSFORM_CHARS else [])
    for text in attempts:
        tree = parse(text)
        if tree is None:
            continue
        if text.rstrip("\n").count("\n") != body.rstrip("\n").count("\n"):
            for node in ast.walk(tree):  # line numbers no longer match the cell: findings hold for the cell
                if hasattr(node, "lineno"):
                    node.lineno = 0
        return tree, offset
    return None


def _regex_findings(source: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(source.splitlines(), 1):
        for key, pattern in REGEXES.items():
            if re.search(pattern, line):
                yield number, LABELS[key]


def _binds_exercise(tree: ast.AST) -> bool:
    """True when a cell (re)defines an exercise's name (class Adam, Adam = ..., import ... as Adam)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name in EXERCISE_NAMES:
            return True
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id in EXERCISE_NAMES:
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((a.asname or a.name) in EXERCISE_NAMES for a in node.names):
                return True
    return False


def review_flags(submission: NotebookNode, release: NotebookNode) -> list[str]:
    """Short labels ('cell 7: touches sys.modules') for what the student changed that needs a human look."""
    release_sources = {c.source for c in release.cells if c.cell_type == "code"}
    release_lines = {line.strip() for s in release_sources for line in s.splitlines() if line.strip()}
    parsed, budget, unchecked = {}, MAX_TOTAL_CHARS, 0
    for index, cell in enumerate(submission.cells):  # every code cell: the release's bind names too
        if cell.cell_type != "code":
            continue
        if len(cell.source) <= min(MAX_CELL_CHARS, budget) and len(parsed) < MAX_CHECKED_CELLS:
            budget -= len(cell.source)
            parsed[index] = _parse(cell.source)
        elif cell.source in release_sources or is_locked(cell):
            continue
        elif len(cell.source) > MAX_CELL_CHARS:
            parsed[index] = "too large"
        else:
            unchecked += 1
    try:
        resolver = _Resolver(_aliases(p[0] for p in parsed.values() if isinstance(p, tuple)))
    except RecursionError:  # absurdly nested code: resolve nothing through aliases
        resolver = _Resolver(dict(DEFAULT_ALIASES))
    flags: list[str] = []
    seen: set[str] = set()
    for index, cell in enumerate(submission.cells):
        if index not in parsed or cell.source in release_sources or is_locked(cell):
            continue
        lines = cell.source.splitlines() if isinstance(parsed[index], tuple) else []
        if parsed[index] == "too large":
            findings = [(0, f"a code cell of {len(cell.source) // 1000} kB, too large to check automatically")]
        elif parsed[index] is None:
            findings = list(_regex_findings(cell.source))
        else:
            tree, offset = parsed[index]
            visitor = _Visitor(resolver, is_solution(cell) or _binds_exercise(tree))
            try:
                visitor.visit(tree)
                findings = [(line + offset if line > 0 else 0, label) for line, label in visitor.found]
            except RecursionError:
                findings = [(0, "code nested too deeply to check automatically")]
        for line, label in findings:
            if 0 < line <= len(lines) and lines[line - 1].strip() in release_lines:
                continue
            flag = f"cell {index}: {label}"
            if flag not in seen:
                seen.add(flag)
                flags.append(flag)
    if unchecked:
        flags.append(f"{unchecked} code cells past the first {MAX_TOTAL_CHARS // 1000} kB or {MAX_CHECKED_CELLS} "
                     "cells of code, not checked automatically")
    if len(flags) > MAX_FLAGS:
        flags = flags[:MAX_FLAGS] + [f"... and {len(flags) - MAX_FLAGS} more flags"]
    return flags
