"""Coverage-guided fuzzing of the stream parser, the read assembler and the decoder.

Not a pytest module (atheris runs libFuzzer, which owns the process and exits it). Run::

    pip install atheris
    python tests/fuzz_parsing.py -max_total_time=120 -timeout=5 -rss_limit_mb=1024 CORPUS_DIR

with ``CORPUS_DIR`` seeded from ``shared/samples``. Each input picks a mode: the parser fed
in pieces of 1-64 bytes with every part handed to the assembler, or ``decode`` of JSON or
XML, or ``decode_plates``. Anything other than our own ``ProtocolError``/``DecodeError``,
a payload that can't be encoded as UTF-8 JSON, or an input slower than ``-timeout`` seconds
is a finding.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import atheris  # type: ignore[import-not-found,import-untyped,unused-ignore]

with atheris.instrument_imports():
    from hik2mqtt.errors import DecodeError, ProtocolError
    from hik2mqtt.events import decode, decode_plates
    from hik2mqtt.multipart import MultipartParser
    from hik2mqtt.reads import ReadArrived, ReadAssembler


def _publishable(value: object) -> None:
    json.dumps(dataclasses.asdict(value), ensure_ascii=False).encode("utf-8")  # type: ignore[call-overload]


def _stream(body: bytes, piece: int) -> None:
    parser = MultipartParser("boundary", max_part_size=1 << 20)
    assembler = ReadAssembler()
    try:
        for i in range(0, len(body), piece):
            for part in parser.feed(body[i : i + piece]):
                out = assembler.handle(part)
                if isinstance(out, ReadArrived):
                    _publishable(out.read)
        parser.end_of_stream()
    except ProtocolError:
        pass


def test_one_input(data: bytes) -> None:
    """One fuzzer input: a mode, a piece size, then the bytes."""
    provider = atheris.FuzzedDataProvider(data)
    mode = provider.ConsumeIntInRange(0, 3)
    piece = provider.ConsumeIntInRange(1, 64)
    body = provider.ConsumeBytes(provider.remaining_bytes())
    if mode == 0:
        _stream(body, piece)
        return
    try:
        if mode == 3:
            for entry in decode_plates(body):
                _publishable(entry.read)
        else:
            _publishable(decode(body, "application/json" if mode == 1 else ""))
    except DecodeError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
