"""torch.utils.tensorboard.SummaryWriter: scalars written as TensorBoard event files.

The files are TensorBoard's own format (TFRecord framing, masked CRC-32C, `Event` protocol
buffers encoded here by hand), so `tensorboard --logdir runs` reads them; tapegrad needs neither
tensorboard nor protobuf to write them. Scalars, text, histograms and images (PNG) are
supported; image grids, figures, graphs and embeddings are refused with an error naming the
method.
"""
import os
import socket
import struct
import time
from datetime import datetime

_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def _crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data):
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_bytes(number, payload):
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _event(wall_time, step=None, file_version=None, summary=None):
    out = b"\x09" + struct.pack("<d", wall_time)
    if step is not None:
        out += b"\x10" + _varint(int(step))
    if file_version is not None:
        out += _field_bytes(3, file_version.encode())
    if summary is not None:
        out += _field_bytes(5, summary)
    return out


def _scalar_summary(tag, value):
    entry = _field_bytes(1, tag.encode()) + b"\x15" + struct.pack("<f", float(value))
    return _field_bytes(1, entry)


def _text_summary(tag, text):
    # a string tensor with the text plugin's metadata, as torch's add_text writes it
    plugin = _field_bytes(1, b"text")
    metadata = _field_bytes(1, plugin)
    tensor = b"\x08\x07" + _field_bytes(2, _field_bytes(2, b"\x08\x01")) \
        + _field_bytes(8, text.encode())
    entry = _field_bytes(1, tag.encode()) + _field_bytes(9, metadata) + _field_bytes(8, tensor)
    return _field_bytes(1, entry)


def _packed_doubles(number, values):
    return _field_bytes(number, b"".join(struct.pack("<d", float(v)) for v in values))


def _histogram_summary(tag, values, bins):
    import numpy as np
    values = np.asarray(values, np.float64).reshape(-1)
    counts, edges = np.histogram(values, bins=bins)
    histo = (b"\x09" + struct.pack("<d", values.min()) + b"\x11" + struct.pack("<d", values.max())
             + b"\x19" + struct.pack("<d", values.size) + b"\x21" + struct.pack("<d", values.sum())
             + b"\x29" + struct.pack("<d", (values * values).sum())
             + _packed_doubles(6, edges[1:]) + _packed_doubles(7, counts))
    return _field_bytes(1, _field_bytes(1, tag.encode()) + _field_bytes(5, histo))


def _png(pixels):
    """PNG bytes of an (H, W, C) uint8 array (C = 1, 3 or 4), written with zlib."""
    import zlib
    height, width, channels = pixels.shape
    color = {1: 0, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def _image_summary(tag, img, dataformats):
    import numpy as np
    array = np.asarray(img.detach().numpy() if hasattr(img, "detach") else img)
    order = dataformats.upper()
    if order == "HW":
        array, order = array[None], "CHW"
    if order == "CHW":
        array = array.transpose(1, 2, 0)
    elif order != "HWC":
        raise ValueError(f"add_image: dataformats {dataformats!r} is not one of CHW, HWC, HW")
    if array.dtype.kind == "f":   # PyTorch's convention: floats in [0, 1]
        array = np.clip(array * 255.0, 0, 255).round()
    pixels = np.ascontiguousarray(array.astype(np.uint8))
    height, width, channels = pixels.shape
    image = (b"\x08" + _varint(height) + b"\x10" + _varint(width) + b"\x18" + _varint(channels)
             + _field_bytes(4, _png(pixels)))
    return _field_bytes(1, _field_bytes(1, tag.encode()) + _field_bytes(4, image))


def _number(value):
    if hasattr(value, "item"):
        return value.item()
    return float(value)


class _EventFile:
    _counter = 0

    def __init__(self, log_dir, filename_suffix=""):
        os.makedirs(log_dir, exist_ok=True)
        _EventFile._counter += 1
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                f"{os.getpid()}.{_EventFile._counter}{filename_suffix}")
        self.path = os.path.join(log_dir, name)
        self._file = open(self.path, "wb")
        self.write(_event(time.time(), file_version="brain.Event:2"))
        self.flush()

    def write(self, record):
        header = struct.pack("<Q", len(record))
        self._file.write(header + struct.pack("<I", _masked_crc(header)) + record
                         + struct.pack("<I", _masked_crc(record)))

    def flush(self):
        if not self._file.closed:
            self._file.flush()

    def close(self):
        self._file.close()


class SummaryWriter:
    """Write scalars for TensorBoard under `log_dir` (default runs/DATETIME_HOSTNAME[comment])."""

    def __init__(self, log_dir=None, comment="", purge_step=None, max_queue=10, flush_secs=120,
                 filename_suffix=""):
        if not log_dir:
            stamp = datetime.now().strftime("%b%d_%H-%M-%S")
            log_dir = os.path.join("runs", f"{stamp}_{socket.gethostname()}{comment}")
        self.log_dir = str(log_dir)
        self.filename_suffix = filename_suffix
        self._file = _EventFile(self.log_dir, filename_suffix)
        self._others = {}

    def get_logdir(self):
        return self.log_dir

    def add_scalar(self, tag, scalar_value, global_step=None, walltime=None, new_style=False,
                   double_precision=False):
        summary = _scalar_summary(tag, _number(scalar_value))
        self._file.write(_event(time.time() if walltime is None else walltime, global_step,
                                summary=summary))

    def add_scalars(self, main_tag, tag_scalar_dict, global_step=None, walltime=None):
        # one event file per tag, in log_dir/MAIN_TAG_TAG, as PyTorch writes them
        wall = time.time() if walltime is None else walltime
        for tag, value in tag_scalar_dict.items():
            where = os.path.join(self.log_dir, main_tag.replace("/", "_") + "_" + tag)
            writer = self._others.get(where)
            if writer is None:
                writer = self._others[where] = _EventFile(where, self.filename_suffix)
            writer.write(_event(wall, global_step, summary=_scalar_summary(main_tag,
                                                                           _number(value))))

    def add_text(self, tag, text_string, global_step=None, walltime=None):
        self._file.write(_event(time.time() if walltime is None else walltime, global_step,
                                summary=_text_summary(tag + "/text_summary", text_string)))

    def add_histogram(self, tag, values, global_step=None, bins="tensorflow", walltime=None,
                      max_bins=None):
        import numpy as np
        data = np.asarray(values.detach().numpy() if hasattr(values, "detach") else values)
        edges = 30 if bins == "tensorflow" else bins   # a fixed count stands in for TF's buckets
        self._file.write(_event(time.time() if walltime is None else walltime, global_step,
                                summary=_histogram_summary(tag, data, edges)))

    def add_image(self, tag, img_tensor, global_step=None, walltime=None, dataformats="CHW"):
        self._file.write(_event(time.time() if walltime is None else walltime, global_step,
                                summary=_image_summary(tag, img_tensor, dataformats)))

    def _unsupported(name):
        def method(self, *args, **kwargs):
            raise NotImplementedError(
                f"tapegrad's SummaryWriter.{name} is not supported (tapegrad writes scalars and "
                "text); log the values with add_scalar, or save the array with numpy.save")
        method.__name__ = name
        return method

    add_images = _unsupported("add_images")
    add_figure = _unsupported("add_figure")
    add_graph = _unsupported("add_graph")
    add_embedding = _unsupported("add_embedding")
    add_audio = _unsupported("add_audio")
    add_video = _unsupported("add_video")
    add_pr_curve = _unsupported("add_pr_curve")
    add_hparams = _unsupported("add_hparams")
    del _unsupported

    def flush(self):
        self._file.flush()
        for w in self._others.values():
            w.flush()

    def close(self):
        self.flush()
        self._file.close()
        for w in self._others.values():
            w.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["SummaryWriter"]
