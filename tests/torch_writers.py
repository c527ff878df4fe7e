"""Write torch / StyleGAN checkpoint files without torch, dnnlib or TensorFlow (test utility).

The files follow the byte layouts of reference FORMATS.md section 1, so the readers can be
tested on every container without the frameworks that normally produce them. Numpy arrays
stand for tensors. Globals such as ``torch._utils._rebuild_tensor_v2`` are emitted by stub
functions and classes whose ``__module__`` names the real module; those fake modules sit in
``sys.modules`` only while a pickle is being written, because pickle checks that a global
can be imported back before it names it.
"""

import collections
import contextlib
import io
import os
import pickle
import shlex
import struct
import sys
import types
import zipfile
from pathlib import Path

import numpy as np

_STUBS = {}  # fake module name -> {attribute: stub}


def _named(module, name, obj):
    obj.__module__, obj.__qualname__, obj.__name__ = module, name, name
    _STUBS.setdefault(module, {})[name] = obj
    return obj


def _func(module, name):
    def stub(*args, **kwargs):
        raise RuntimeError(f"{module}.{name} is a stub for writing test pickles")

    return _named(module, name, stub)


def _cls(module, name, bases=(), attrs=None):
    return _named(module, name, type(name, bases, dict(attrs or {})))


_rebuild_tensor_v2 = _func("torch._utils", "_rebuild_tensor_v2")
_rebuild_parameter = _func("torch._utils", "_rebuild_parameter")
_load_from_bytes = _func("torch.storage", "_load_from_bytes")
_reconstruct_persistent_obj = _func("torch_utils.persistence", "_reconstruct_persistent_obj")
EasyDict = _cls("dnnlib.util", "EasyDict", (dict,))
Network = _cls("dnnlib.tflib.network", "Network", attrs={"__getstate__": lambda self: self._state})

_STORAGE_NAMES = {
    "float64": "DoubleStorage",
    "float32": "FloatStorage",
    "float16": "HalfStorage",
    "bfloat16": "BFloat16Storage",  # ml_dtypes.bfloat16 arrays
    "int64": "LongStorage",
    "int32": "IntStorage",
    "int16": "ShortStorage",
    "int8": "CharStorage",
    "uint8": "ByteStorage",
    "bool": "BoolStorage",
    "complex64": "ComplexFloatStorage",
    "complex128": "ComplexDoubleStorage",
}
_STORAGE_CLASSES = {dt: _cls("torch", name) for dt, name in _STORAGE_NAMES.items()}

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_SYS_INFO = {
    "protocol_version": 1001,
    "little_endian": True,
    "type_sizes": {"short": 2, "int": 4, "long": 4},
}


@contextlib.contextmanager
def _stub_modules():
    """Put the fake modules into sys.modules for the duration of one dump."""
    # Parent packages too: importing 'torch_utils.persistence' needs 'torch_utils'.
    names = {
        ".".join(name.split(".")[: i + 1]) for name in _STUBS for i in range(name.count(".") + 1)
    }
    saved = {name: sys.modules.get(name) for name in names}
    for name in names:
        sys.modules[name] = types.ModuleType(name)
        sys.modules[name].__dict__.update(_STUBS.get(name, {}))
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                del sys.modules[name]
            else:
                sys.modules[name] = old


class _Reduce:
    """Pickles as ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class _StorageRef:
    """A storage (1-D array); the pickler turns it into a persistent id."""

    def __init__(self, flat):
        self.flat = flat


class _Storages:
    """Assigns storages to arrays; views of one base array share that base's storage."""

    def __init__(self):
        self.by_root = {}  # id(root) -> (root, _StorageRef); root kept alive so ids stay unique

    def tensor(self, arr):
        """Array -> (storage ref, offset, size, stride) in elements, as torch stores a tensor."""
        root = arr
        while isinstance(root.base, np.ndarray):
            root = root.base
        item = arr.itemsize
        shares = (
            root is not arr
            and arr.size > 0
            and root.dtype == arr.dtype
            and root.flags.c_contiguous
            and all(s >= 0 and s % item == 0 for s in arr.strides)
        )
        if shares:
            offset = (
                arr.__array_interface__["data"][0] - root.__array_interface__["data"][0]
            ) // item
            stride = tuple(s // item for s in arr.strides)
        else:  # torch has no negative strides; such arrays get a storage of their own
            root = np.array(arr, order="C")  # (ascontiguousarray would turn 0-d into 1-d)
            offset, stride = 0, tuple(s // item for s in root.strides)
        if id(root) not in self.by_root:
            self.by_root[id(root)] = (root, _StorageRef(root.reshape(-1)))
        return self.by_root[id(root)][1], offset, tuple(arr.shape), stride


class _TorchPickler(pickle.Pickler):
    """Numpy arrays -> ``_rebuild_tensor_v2(storage, ...)``; storages -> persistent ids."""

    def __init__(self, file, legacy, location="cpu"):
        super().__init__(file, protocol=2)  # torch.save's DEFAULT_PROTOCOL
        self.legacy, self.location = legacy, location
        self.storages = _Storages()
        self.keys = {}  # id(storage ref) -> (key, ref), in first-seen order

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            ref, offset, size, stride = self.storages.tensor(obj)
            return _rebuild_tensor_v2, (ref, offset, size, stride, False, collections.OrderedDict())
        return NotImplemented

    def persistent_id(self, obj):
        if not isinstance(obj, _StorageRef):
            return None
        if id(obj) not in self.keys:
            # zip keys count up; legacy keys are the storages' C pointers in decimal (ids here).
            key = str(id(obj)) if self.legacy else str(len(self.keys))
            self.keys[id(obj)] = (key, obj)
        pid = (
            "storage",
            _STORAGE_CLASSES[obj.flat.dtype.name],
            self.keys[id(obj)][0],
            self.location,
            obj.flat.size,
        )
        return pid + (None,) if self.legacy else pid  # legacy ids carry view metadata

    def written(self, obj):
        with _stub_modules():
            self.dump(obj)
        return list(self.keys.values())


def _raw(flat, byteorder="little"):
    return (flat.byteswap() if byteorder == "big" and flat.itemsize > 1 else flat).tobytes()


def save_torch_zip(path, obj, folder=None, byteorder="little", location="cpu"):
    """Write ``obj`` like ``torch.save`` (torch >= 1.6 zip archive).

    ``folder`` is the archive's top folder; torch uses the file name without extension.
    ``location`` is the device tag stored with every storage (e.g. 'cuda:0').
    """
    folder = folder or Path(path).stem
    buf = io.BytesIO()
    written = _TorchPickler(buf, legacy=False, location=location).written(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{folder}/data.pkl", buf.getvalue())
        zf.writestr(f"{folder}/byteorder", byteorder)
        for key, ref in written:
            zf.writestr(f"{folder}/data/{key}", _raw(ref.flat, byteorder))
        zf.writestr(f"{folder}/version", "3\n")


def _legacy_stream(obj, location="cpu"):
    """Bytes of a pre-1.6 ``torch.save`` stream of ``obj``."""
    f = io.BytesIO()
    for header in (_LEGACY_MAGIC, 1001, _LEGACY_SYS_INFO):
        pickle.dump(header, f, protocol=2)
    written = sorted(
        _TorchPickler(f, True, location).written(obj), key=lambda kv: kv[0]
    )  # as strings
    pickle.dump([key for key, _ in written], f, protocol=2)
    for _, ref in written:
        f.write(struct.pack("<q", ref.flat.size) + _raw(ref.flat))
    return f.getvalue()


def save_torch_legacy(path, obj, location="cpu"):
    """Write ``obj`` like ``torch.save(..., _use_new_zipfile_serialization=False)``."""
    Path(path).write_bytes(_legacy_stream(obj, location))


# ----------------------------------------------------------------------------------------
# stylegan2-ada-pytorch network pickles.

_ADA_BUFFERS = {"resample_filter", "w_avg", "noise_const"}
# (parent class, child attribute) -> child class, as in ADA training/networks.py.
_ADA_CHILDREN = {
    ("Generator", "mapping"): "MappingNetwork",
    ("Generator", "synthesis"): "SynthesisNetwork",
    ("Discriminator", "mapping"): "MappingNetwork",
    ("Discriminator", "b4"): "DiscriminatorEpilogue",
    ("Discriminator", "b*"): "DiscriminatorBlock",
    ("MappingNetwork", "fc*"): "FullyConnectedLayer",
    ("MappingNetwork", "embed"): "FullyConnectedLayer",
    ("SynthesisNetwork", "b*"): "SynthesisBlock",
    ("SynthesisBlock", "conv0"): "SynthesisLayer",
    ("SynthesisBlock", "conv1"): "SynthesisLayer",
    ("SynthesisBlock", "torgb"): "ToRGBLayer",
    ("SynthesisBlock", "skip"): "Conv2dLayer",
    ("SynthesisLayer", "affine"): "FullyConnectedLayer",
    ("ToRGBLayer", "affine"): "FullyConnectedLayer",
    ("DiscriminatorBlock", "fromrgb"): "Conv2dLayer",
    ("DiscriminatorBlock", "conv0"): "Conv2dLayer",
    ("DiscriminatorBlock", "conv1"): "Conv2dLayer",
    ("DiscriminatorBlock", "skip"): "Conv2dLayer",
    ("DiscriminatorEpilogue", "fromrgb"): "Conv2dLayer",
    ("DiscriminatorEpilogue", "conv"): "Conv2dLayer",
    ("DiscriminatorEpilogue", "fc"): "FullyConnectedLayer",
    ("DiscriminatorEpilogue", "out"): "FullyConnectedLayer",
}


def _ada_child_class(parent, name):
    wildcard = name.rstrip("0123456789") + "*"
    return _ADA_CHILDREN.get((parent, name)) or _ADA_CHILDREN.get((parent, wildcard)) or "Module"


def _easydict(obj):
    if isinstance(obj, dict):
        return EasyDict((k, _easydict(v)) for k, v in obj.items())
    return obj


class _AdaModule:
    """One persistent module; pickles as ``_reconstruct_persistent_obj(meta)``."""

    def __init__(self, class_name, init_kwargs):
        self.class_name = class_name
        od = collections.OrderedDict
        self.state = {
            "training": False,
            "_parameters": od(),
            "_buffers": od(),
            "_non_persistent_buffers_set": set(),
            "_backward_hooks": od(),
            "_forward_hooks": od(),
            "_forward_pre_hooks": od(),
            "_state_dict_hooks": od(),
            "_load_state_dict_pre_hooks": od(),
            "_modules": od(),
            "_init_args": (),
            "_init_kwargs": _easydict(init_kwargs),
        }

    def add(self, name, value):
        *path, leaf = name.split(".")
        node = self
        for part in path:
            children = node.state["_modules"]
            if part not in children:
                children[part] = _AdaModule(_ada_child_class(node.class_name, part), {})
            node = children[part]
        if leaf in _ADA_BUFFERS or value is None:
            node.state["_buffers"][leaf] = value
        else:
            value = np.asarray(value)
            node.state["_parameters"][leaf] = _Reduce(
                _rebuild_parameter, value, False, collections.OrderedDict()
            )
            if leaf == "weight":  # a numpy scalar attribute, as ADA layers keep their gains
                node.state["weight_gain"] = np.float64(1 / np.sqrt(np.prod(value.shape[1:])))

    def __reduce__(self):
        meta = dict(
            type="class",
            version=6,
            module_src="<source omitted>",
            class_name=self.class_name,
            state=self.state,
        )
        return _reconstruct_persistent_obj, (meta,)


class _AdaPickler(pickle.Pickler):
    """Tensors the way plain pickle stores them: storages as embedded legacy streams."""

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            obj = np.array(obj, order="C")
            flat, stride = obj.reshape(-1), tuple(s // obj.itemsize for s in obj.strides)
            storage = _Reduce(_load_from_bytes, _legacy_stream(_StorageRef(flat)))
            return _rebuild_tensor_v2, (
                storage,
                0,
                tuple(obj.shape),
                stride,
                False,
                collections.OrderedDict(),
            )
        return NotImplemented


def _ada_network(class_name, state_dict, init_kwargs):
    root = _AdaModule(class_name, init_kwargs)
    for name, value in state_dict.items():
        root.add(name, value)
    return root


def save_ada_pickle(path, G_ema_state_dict, D_state_dict, G_init_kwargs, D_init_kwargs):
    """Write a stylegan2-ada-pytorch ``network-snapshot-*.pkl`` holding the given weights.

    G and G_ema are separate objects with the same weights; init kwargs become EasyDicts.
    """
    data = {
        "G": _ada_network("Generator", G_ema_state_dict, G_init_kwargs),
        "D": _ada_network("Discriminator", D_state_dict, D_init_kwargs),
        "G_ema": _ada_network("Generator", G_ema_state_dict, G_init_kwargs),
        "augment_pipe": None,
        "training_set_kwargs": None,
    }
    buf = io.BytesIO()
    with _stub_modules():
        _AdaPickler(buf, protocol=4).dump(data)  # pickle.dump's default protocol
    Path(path).write_bytes(buf.getvalue())


# ----------------------------------------------------------------------------------------
# Official TensorFlow StyleGAN2 pickles.

_TF_COMPONENTS = {
    "mapping": ("G_mapping", "G_mapping"),
    "synthesis": ("G_synthesis", "G_synthesis_stylegan2"),
}


def _tf_network(name, func_name, variables, static_kwargs, components, version):
    net = Network.__new__(Network)
    net._state = {
        "version": version,
        "name": name,
        "static_kwargs": dict(static_kwargs),
        "components": components,
        "build_module_src": "<omitted>",
        "build_func_name": func_name,
        "variables": [(k, np.asarray(v, np.float32)) for k, v in variables.items()],
    }
    return net


def _tf_generator(name, variables, static_kwargs, version):
    own, parts = {}, {key: {} for key in _TF_COMPONENTS}
    for var_name, value in variables.items():
        head, _, rest = var_name.partition("/")
        if head in parts and rest:
            parts[head][rest] = value
        else:
            own[var_name] = value
    components = {
        key: _tf_network(comp_name, func, parts[key], static_kwargs, {}, version)
        for key, (comp_name, func) in _TF_COMPONENTS.items()
    }
    return _tf_network(name, "G_main", own, static_kwargs, components, version)


def save_tf_pickle(path, G_vars, D_vars, Gs_vars, G_static_kwargs, D_static_kwargs, version=4):
    """Write an official-style TF StyleGAN2 pickle: the tuple (G, D, Gs) of Networks.

    Variables are flat dicts named as ``tf_variables`` returns them: ``mapping/...`` and
    ``synthesis/...`` go to the G_mapping / G_synthesis components, the rest (``dlatent_avg``,
    ``lod``) stay on the generator itself; D has no components.
    """
    nets = (
        _tf_generator("G", G_vars, G_static_kwargs, version),
        _tf_network("D", "D_stylegan2", D_vars, D_static_kwargs, {}, version),
        _tf_generator("Gs", Gs_vars, G_static_kwargs, version),
    )
    buf = io.BytesIO()
    with _stub_modules():
        pickle.Pickler(buf, protocol=4).dump(
            nets
        )  # HIGHEST_PROTOCOL of the Pythons that wrote them
    Path(path).write_bytes(buf.getvalue())


# ----------------------------------------------------------------------------------------


class _System:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)  # pickled as posix.system on Linux


def write_malicious_pickle(path, marker_file):
    """A pickle that runs ``touch marker_file`` when loaded with plain ``pickle.load``."""
    Path(path).write_bytes(
        pickle.dumps(_System(f"touch {shlex.quote(str(marker_file))}"), protocol=2)
    )
