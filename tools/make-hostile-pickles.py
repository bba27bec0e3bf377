#!/usr/bin/env python3
"""Writes fixtures/hostile/: pickles whose payload would run a shell command when unpickled
by Python's pickle module, one per opcode route, each as a raw pickle (<route>.pkl) and as a
torch.save-style ZIP checkpoint (<route>.pt, the pickle as archive/data.pkl).

Standard library only (pickle, pickletools, struct, zipfile), so Debian's python3 runs it:

    python3 tools/make-hostile-pickles.py            # writes the fixtures
    python3 tools/make-hostile-pickles.py --verify   # also proves each payload runs in CPython

Every payload creates the file `qcaps-hostile-ran-<route>` in the current directory (a
relative path, so whoever loads a fixture decides where the marker would appear: the tests
load them with the working directory set to a fresh temporary folder and check that no marker
is there afterwards). --verify unpickles each fixture with pickle.loads in a temporary folder
and fails unless the marker appeared: the fixtures are real attacks, not just names.

The routes (the global the reader must refuse comes first in each):
  global-os-system          GLOBAL os.system, REDUCE                       (protocol 0)
  stack-global-posix-system STACK_GLOBAL posix.system, REDUCE              (protocol 4)
  reduce-builtins-eval      __reduce__ -> builtins.eval(source), REDUCE     (protocol 3)
  reduce-subprocess-popen   __reduce__ -> subprocess.Popen([...]), REDUCE   (protocol 3)
  build-os-system           BUILD sets __setstate__ = os.system on an object, a second
                            BUILD calls it                                  (protocol 2)
  inst-os-system            INST os.system                                  (protocol 0)
  obj-posix-system          OBJ posix.system                                (protocol 1)
  newobj-builtins-eval      NEWOBJ of types.SimpleNamespace, then BUILD as above with
                            builtins.eval                                   (protocol 2)
  newobj-ex-subprocess-popen NEWOBJ_EX of types.SimpleNamespace, BUILD with
                            subprocess.Popen                                (protocol 4)
"""

import io
import os
import pickle
import pickletools
import subprocess
import sys
import tempfile
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "hostile")


def marker(route):
    return "qcaps-hostile-ran-" + route


def text0(s):
    """A protocol-0 STRING operand: S'...'\\n (repr quoting)."""
    return b"S" + repr(s).encode("ascii") + b"\n"


def unicode4(s):
    """SHORT_BINUNICODE."""
    b = s.encode("utf-8")
    return b"\x8c" + bytes([len(b)]) + b


def global0(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def binput(i):
    return b"q" + bytes([i])


def binget(i):
    return b"h" + bytes([i])


def shell(route):
    return "touch " + marker(route)


def eval_source(route):
    return "__import__('os').system(%r)" % shell(route)


class Reduce:
    """An object whose pickle calls fn(*args) on load (the classic __reduce__ attack)."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def setstate_attack(first_global, call_arg, newobj):
    """The global is loaded first (and memoized); an object gets it as its __setstate__ through
    BUILD's slot-state dict, and a second BUILD calls it with `call_arg`."""
    p = b"\x80\x02" + first_global + binput(0) + b"0"  # PUT 0, POP
    if newobj == "NEWOBJ":
        p += global0("types", "SimpleNamespace") + b")" + b"\x81"  # EMPTY_TUPLE, NEWOBJ
    elif newobj == "NEWOBJ_EX":
        p = b"\x80\x04" + p[2:]
        p += unicode4("types") + unicode4("SimpleNamespace") + b"\x93"  # STACK_GLOBAL
        p += b")" + b"}" + b"\x92"  # EMPTY_TUPLE, EMPTY_DICT, NEWOBJ_EX
    else:
        p += global0("types", "SimpleNamespace") + b")" + b"R"  # EMPTY_TUPLE, REDUCE
    # BUILD (None, {'__setstate__': <global>})
    p += b"N" + b"}" + unicode4("__setstate__") + binget(0) + b"s" + b"\x86" + b"b"
    p += call_arg + b"b" + b"."  # BUILD with the argument: inst.__setstate__(arg)
    return p


def routes():
    r = {}
    route = "global-os-system"
    r[route] = global0("os", "system") + b"(" + text0(shell(route)) + b"tR."

    route = "stack-global-posix-system"
    r[route] = (
        b"\x80\x04" + unicode4("posix") + unicode4("system") + b"\x93" + unicode4(shell(route)) + b"\x85R."
    )  # TUPLE1, REDUCE

    import builtins

    route = "reduce-builtins-eval"
    r[route] = pickle.dumps(Reduce(builtins.eval, (eval_source(route),)), protocol=3)

    route = "reduce-subprocess-popen"
    r[route] = pickle.dumps(Reduce(subprocess.Popen, (["touch", marker(route)],)), protocol=3)

    route = "build-os-system"
    r[route] = setstate_attack(global0("os", "system"), unicode4(shell(route)), "REDUCE")

    route = "inst-os-system"
    r[route] = b"(" + unicode4(shell(route)) + b"ios\nsystem\n."

    route = "obj-posix-system"
    r[route] = b"(" + global0("posix", "system") + unicode4(shell(route)) + b"o."

    route = "newobj-builtins-eval"
    r[route] = setstate_attack(global0("builtins", "eval"), unicode4(eval_source(route)), "NEWOBJ")

    route = "newobj-ex-subprocess-popen"
    popen_args = b"]" + unicode4("touch") + b"a" + unicode4(marker(route)) + b"a"  # ['touch', marker]
    r[route] = setstate_attack(global0("subprocess", "Popen"), popen_args, "NEWOBJ_EX")
    return r


def torch_zip(pickle_bytes):
    """The pickle as a torch.save archive: archive/data.pkl, byteorder and version records."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in [("archive/data.pkl", pickle_bytes), ("archive/byteorder", b"little"), ("archive/version", b"3\n")]:
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)  # same bytes every run
    return buf.getvalue()


def verify(name, pickle_bytes):
    """Unpickles in a temporary folder with CPython; the payload must create its marker."""
    with tempfile.TemporaryDirectory() as d:
        cwd = os.getcwd()
        os.chdir(d)
        try:
            try:
                pickle.loads(pickle_bytes)
            except Exception:
                pass  # the attack has run by the time a later opcode fails
            for _ in range(100):  # Popen runs touch in a child process
                if os.path.exists(marker(name)):
                    break
                time.sleep(0.02)
            ran = os.path.exists(marker(name))
        finally:
            os.chdir(cwd)
    if not ran:
        sys.exit("make-hostile-pickles: %s did not run its payload under CPython" % name)
    print("verified: %s runs its payload in CPython's pickle.loads" % name)


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, p in routes().items():
        pickletools.dis(p, out=io.StringIO())  # a well-formed pickle
        with open(os.path.join(OUT, name + ".pkl"), "wb") as f:
            f.write(p)
        with open(os.path.join(OUT, name + ".pt"), "wb") as f:
            f.write(torch_zip(p))
        if "--verify" in sys.argv:
            verify(name, p)
    print("wrote %d hostile pickles to %s" % (len(routes()), os.path.normpath(OUT)))


if __name__ == "__main__":
    main()
