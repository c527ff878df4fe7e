"""Read PyTorch and StyleGAN checkpoints without torch or TensorFlow.

Supported containers (sniffed from the first bytes, see reference FORMATS.md section 1):

* torch zip archives (``torch.save`` since torch 1.6),
* torch legacy streams (``torch.save`` before 1.6),
* plain pickles: stylegan2-ada-pytorch / stylegan3 network pickles and the official
  TensorFlow StyleGAN2 pickles.

Every tensor comes back as a contiguous numpy array. Unpickling goes through an explicit
allow-list of globals, and BUILD may only fill fresh objects, so a checkpoint can only build
data, never run code or alter a class: embedded sources (``module_src``, ``build_module_src``)
are never executed.
"""

import argparse
import collections
import io
import pickle
import struct
import types
import zipfile

import numpy as np

from stylejax.model_format import CheckpointError

__all__ = [
    "EasyDict",
    "PersistentModule",
    "TFNetwork",
    "load_checkpoint",
    "module_init_kwargs",
    "module_state_dict",
    "tf_static_kwargs",
    "tf_variables",
]

_ZIP_MAGIC = b"PK\x03\x04"
# PROTO 2 + LONG1 of torch's legacy magic number 0x1950a86a20f9469cfc6c.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_HEAD = b"\x80\x02\x8a\x0a" + _LEGACY_MAGIC.to_bytes(10, "little")
_LEGACY_PROTOCOL = 1001

# torch storage class name -> numpy dtype ('bfloat16' is widened to float32 on read).
_STORAGE_DTYPES = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "ComplexFloatStorage": "c8",
    "ComplexDoubleStorage": "c16",
    "UntypedStorage": "u1",
}


class _Invalid(Exception):
    """Internal: a format violation; load_checkpoint adds the file name."""


# ----------------------------------------------------------------------------------------
# Stand-ins for the classes that the pickles name.


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a dict with attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class PersistentModule:
    """A stylegan2-ada-pytorch / stylegan3 persistent module, kept as data.

    ``state`` is the module's ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``,
    ``_init_kwargs``, ...); the embedded source code is dropped, never executed.
    """

    def __init__(self, class_name, state, version=None):
        self.class_name = class_name
        self.state = state
        self.version = version

    def __repr__(self):
        return f"PersistentModule({self.class_name!r}, children={list(self.state.get('_modules') or {})})"


class TFNetwork:
    """Stand-in for ``dnnlib.tflib.network.Network``; BUILD hands it the pickled state dict."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise _Invalid(
                f"expected a dict as dnnlib.tflib.network.Network state, found {type(state).__name__}"
            )
        version = state.get("version", 0)
        if not isinstance(version, int) or version < 4:
            raise _Invalid(
                f"TensorFlow network {state.get('name')!r} has pickle version {version!r}; expected version >= 4 "
                "(the official StyleGAN2 pickles); re-export it with the StyleGAN2 TensorFlow code"
            )
        self.state = state

    @property
    def name(self):
        return self.state.get("name")

    def __repr__(self):
        return f"TFNetwork({self.name!r}, components={list(self.state.get('components') or {})})"


class _StorageType:
    """Marker returned for ``torch.<Name>Storage`` globals."""

    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _PendingStorage:
    """Placeholder storage in the first pass over a legacy stream (data not read yet)."""


# ----------------------------------------------------------------------------------------
# Tensor and storage rebuilding.


def _storage_array(raw, dtype, numel, big_endian=False):
    """Raw storage bytes -> 1-D native numpy array of ``numel`` elements."""
    bf16 = dtype == "bfloat16"
    dt = np.dtype("u2" if bf16 else dtype).newbyteorder(">" if big_endian else "<")
    if len(raw) < numel * dt.itemsize:
        raise _Invalid(
            f"storage holds {len(raw)} bytes, expected {numel} x {dt.itemsize} bytes (truncated file?)"
        )
    arr = np.frombuffer(raw, dtype=dt, count=numel).astype(dt.newbyteorder("="))
    if bf16:  # bfloat16 is the upper half of a float32
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """View of a storage (offset, size, stride in elements), copied to a contiguous array."""
    if isinstance(storage, _PendingStorage):
        return None
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise _Invalid(f"expected a storage for a tensor, found {type(storage).__name__}")
    size, stride = tuple(size), tuple(stride)
    if len(size) != len(stride) or min(size + stride, default=0) < 0 or storage_offset < 0:
        raise _Invalid(
            f"bad tensor geometry: offset {storage_offset}, size {size}, stride {stride}"
        )
    if 0 in size:
        return np.zeros(size, storage.dtype)
    # Bounds check before as_strided, which would otherwise read outside the buffer.
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise _Invalid(
            f"tensor (offset {storage_offset}, size {size}, stride {stride}) reaches element {last}, "
            f"but its storage has {storage.size} elements"
        )
    base = storage[storage_offset:]
    view = np.lib.stride_tricks.as_strided(base, size, [s * storage.itemsize for s in stride])
    return np.array(view, copy=True, order="C")


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    return data  # grad flags and hooks mean nothing here


def _reconstruct_persistent_obj(meta):
    if not isinstance(meta, dict) or meta.get("type") != "class":
        found = meta.get("type") if isinstance(meta, dict) else type(meta).__name__
        raise _Invalid(f"expected a persistent class record (type 'class'), found {found!r}")
    return PersistentModule(meta.get("class_name"), meta.get("state") or {}, meta.get("version"))


def _codecs_encode(text, encoding="utf-8", errors="strict"):
    # Protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1'); allow nothing else.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise _Invalid(f"expected _codecs.encode(str, 'latin1'), found encoding {encoding!r}")
    return text.encode("latin1", errors)


def _torch_size(*args):
    return tuple(*args)


def _torch_device(kind, index=None):
    return kind if index is None else f"{kind}:{index}"


# numpy's own reconstruction helpers, found through reduce so the numpy 1 and 2 names agree.
_np_reconstruct = np.zeros(1).__reduce__()[0]
_np_scalar = np.float32(0).__reduce__()[0]


def _np_frombuffer(buf, dtype, shape, order):
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy()


_SAFE_GLOBALS = {
    "collections.OrderedDict": collections.OrderedDict,
    "argparse.Namespace": argparse.Namespace,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "_codecs.encode": _codecs_encode,
    "torch.Size": _torch_size,
    "torch.device": _torch_device,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch_utils.persistence._reconstruct_persistent_obj": _reconstruct_persistent_obj,
    "dnnlib.util.EasyDict": EasyDict,
    "dnnlib.tflib.network.Network": TFNetwork,
    "numpy.dtype": np.dtype,
    "numpy.ndarray": np.ndarray,
}
for _mod in ("numpy.core", "numpy._core"):
    _SAFE_GLOBALS[f"{_mod}.multiarray._reconstruct"] = _np_reconstruct
    _SAFE_GLOBALS[f"{_mod}.multiarray.scalar"] = _np_scalar
    _SAFE_GLOBALS[f"{_mod}.numeric._frombuffer"] = _np_frombuffer


class _Unpickler(pickle._Unpickler):  # the pure-Python unpickler, so that BUILD can be checked
    """Unpickler that resolves only allow-listed globals and resolves storages by callback."""

    def __init__(self, data, path, storage_for=None):
        super().__init__(io.BytesIO(data) if isinstance(data, bytes) else data)
        self.path = path
        self.storage_for = storage_for  # persistent id tuple -> storage array, or None

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch.storage" and name == "_load_from_bytes":
            return self._load_from_bytes
        obj = _SAFE_GLOBALS.get(f"{module}.{name}")
        if obj is None:
            raise CheckpointError(
                f"refusing to load global '{module}.{name}' from {self.path}: checkpoints may only reference "
                "tensors, state dicts and the known network containers"
            )
        return obj

    def persistent_load(self, pid):
        if self.storage_for is None:
            raise _Invalid(f"expected no persistent ids in a plain pickle, found {pid!r}")
        if not (
            isinstance(pid, tuple)
            and len(pid) >= 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
        ):
            raise _Invalid(
                f"expected a ('storage', <torch storage type>, key, location, numel) id, found {pid!r}"
            )
        return self.storage_for(pid)

    def load_build(self):
        # BUILD sets attributes on the object below it; on an allow-listed class or function
        # that would change it for the whole process, so only fresh instances may be built.
        if isinstance(
            self.stack[-2], (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)
        ):
            raise _Invalid(f"expected BUILD on an object, found it applied to {self.stack[-2]!r}")
        super().load_build()

    dispatch = {**pickle._Unpickler.dispatch, pickle.BUILD[0]: load_build}

    def _load_from_bytes(self, data):
        # ADA pickles embed each storage as a complete legacy torch.save stream.
        if not isinstance(data, bytes) or not data.startswith(_LEGACY_HEAD):
            raise _Invalid("expected a legacy torch stream inside torch.storage._load_from_bytes")
        return _read_legacy(data, self.path)


# ----------------------------------------------------------------------------------------
# Containers.


def _read_zip(path):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        if not names:
            raise _Invalid("expected a torch zip archive, found an empty zip file")
        # torch names the folder after the file it wrote to; take it from the archive.
        prefix = names[0].split("/", 1)[0] + "/"
        if prefix + "data.pkl" not in names:
            raise _Invalid(f"expected '{prefix}data.pkl' in the zip archive, found {names[:5]}")
        big_endian = (
            prefix + "byteorder" in names and zf.read(prefix + "byteorder").strip() == b"big"
        )
        storages = {}

        def storage_for(pid):
            _, stype, key, _location, numel = pid[:5]
            if key not in storages:
                record = f"{prefix}data/{key}"
                if record not in names:
                    raise _Invalid(f"expected storage record '{record}', found none")
                storages[key] = _storage_array(zf.read(record), stype.dtype, numel, big_endian)
            return storages[key]

        return _Unpickler(zf.read(prefix + "data.pkl"), path, storage_for).load()


def _read_legacy(data, path):
    """Parse a pre-1.6 torch.save stream held in ``data`` (bytes)."""
    f = io.BytesIO(data)
    if _Unpickler(f, path).load() != _LEGACY_MAGIC:
        raise _Invalid("expected the torch legacy magic number")
    protocol = _Unpickler(f, path).load()
    if protocol != _LEGACY_PROTOCOL:
        raise _Invalid(f"expected legacy protocol {_LEGACY_PROTOCOL}, found {protocol!r}")
    sys_info = _Unpickler(f, path).load()
    big_endian = isinstance(sys_info, dict) and not sys_info.get("little_endian", True)

    # The storages follow the object pickle, and their sizes depend on dtypes that only the
    # object pickle names; so a first pass records the dtypes and a second builds tensors.
    obj_start = f.tell()
    dtypes = {}

    def record_dtype(pid):
        dtypes[pid[2]] = pid[1].dtype
        return _PendingStorage()

    _Unpickler(f, path, record_dtype).load()
    keys = _Unpickler(f, path).load()
    if not isinstance(keys, list):
        raise _Invalid(f"expected the list of storage keys, found {type(keys).__name__}")
    roots = {}
    for key in keys:
        if key not in dtypes:
            raise _Invalid(f"storage key {key!r} is listed but no tensor uses it")
        (numel,) = struct.unpack("<q", f.read(8))
        itemsize = 2 if dtypes[key] == "bfloat16" else np.dtype(dtypes[key]).itemsize
        roots[key] = _storage_array(f.read(numel * itemsize), dtypes[key], numel, big_endian)

    def storage_for(pid):
        if len(pid) != 6:
            raise _Invalid(f"expected a 6-tuple legacy storage id, found {pid!r}")
        _, _stype, key, _location, _numel, view = pid
        if key not in roots:
            raise _Invalid(f"expected storage {key!r} after the key list, found none")
        if view is not None:  # very old files: (view_key, offset, view_size) into the root
            _, offset, view_size = view
            return roots[key][offset : offset + view_size]
        return roots[key]

    f.seek(obj_start)
    return _Unpickler(f, path, storage_for).load()


def _read_legacy_file(path):
    with open(path, "rb") as f:
        return _read_legacy(f.read(), path)


def _read_plain_pickle(path):
    with open(path, "rb") as f:
        return _Unpickler(f, path).load()


def load_checkpoint(path):
    """Load a torch zip / torch legacy / pickle checkpoint with tensors as numpy arrays.

    Raises:
      CheckpointError: the file is not a checkpoint, is damaged, or names a global outside
        the allow-list (nothing in the file is ever executed).
    """
    path = str(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(_LEGACY_HEAD))
    except OSError as e:
        raise CheckpointError(f"cannot open checkpoint {path}: {e.strerror or e}") from e
    if head.startswith(_ZIP_MAGIC):
        kind, read = "torch zip archive", _read_zip
    elif head == _LEGACY_HEAD:
        kind, read = "torch legacy stream", _read_legacy_file
    elif head.startswith(b"\x80"):
        kind, read = "pickle", _read_plain_pickle
    else:
        raise CheckpointError(
            f"{path} is not a torch/pickle checkpoint: expected a zip archive (PK\\x03\\x04) or a pickle "
            f"stream (\\x80), found {head[:8]!r}"
        )
    try:
        return read(path)
    except CheckpointError:
        raise
    except _Invalid as e:
        raise CheckpointError(f"cannot read {path} as a {kind}: {e}") from None
    except Exception as e:  # a parse boundary: any failure of the bytes is a damaged file
        raise CheckpointError(
            f"cannot read {path} as a {kind}: the file is damaged or truncated ({type(e).__name__}: {e})"
        ) from e


# ----------------------------------------------------------------------------------------
# Views of ADA and TF network objects.


def _plain(obj):
    """EasyDicts / OrderedDicts -> plain dicts, recursively."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def module_state_dict(node, prefix=""):
    """Flat ``name -> array`` of a PersistentModule, named and ordered like torch's state_dict()."""
    if not isinstance(node, PersistentModule):
        raise TypeError(f"expected a PersistentModule, found {type(node).__name__}")
    out = {}
    for group in ("_parameters", "_buffers"):
        for name, value in (node.state.get(group) or {}).items():
            if value is not None:
                out[prefix + name] = value
    for name, child in (node.state.get("_modules") or {}).items():
        if child is not None:
            out.update(module_state_dict(child, f"{prefix}{name}."))
    return out


def module_init_kwargs(node):
    """The constructor keyword arguments a persistent module was built with, as plain dicts."""
    if not isinstance(node, PersistentModule):
        raise TypeError(f"expected a PersistentModule, found {type(node).__name__}")
    return _plain(node.state.get("_init_kwargs") or {})


def tf_variables(net, prefix=""):
    """Flat ``name -> array`` of a TF network: own variables, then components as ``key/...``."""
    if not isinstance(net, TFNetwork):
        raise TypeError(f"expected a TFNetwork, found {type(net).__name__}")
    out = {prefix + name: np.asarray(value) for name, value in net.state.get("variables") or ()}
    for key, component in (net.state.get("components") or {}).items():
        out.update(tf_variables(component, f"{prefix}{key}/"))
    return out


def tf_static_kwargs(net):
    """The keyword arguments passed explicitly when the TF network was built (defaults absent)."""
    if not isinstance(net, TFNetwork):
        raise TypeError(f"expected a TFNetwork, found {type(net).__name__}")
    return _plain(net.state.get("static_kwargs") or {})
