"""umT5's tokenizer, from the sentencepiece model the text encoder file carries.

Comfy-Org's ``umt5_xxl_*.safetensors`` hold the tokenizer as a uint8 tensor
``spiece_model`` (the serialized sentencepiece model proto), which is how
ComfyUI's ``SPieceTokenizer`` reads it; the pack reads the same bytes, so a
prompt becomes the ids ComfyUI and Wan use: sentencepiece pieces plus the end
token ``</s>`` (id 1), at most 512 ids in all (Wan truncates there, keeping
the end token). Wan cleans the prompt first (HTML entities, whitespace); it
also runs ftfy, which only repairs mis-decoded text, and is left out here.

``sentencepiece`` is part of ComfyUI's requirements; outside ComfyUI it is an
optional install, imported only when a prompt is tokenized.
"""
from __future__ import annotations

import html
import re

import torch

from ...errors import InputError
from .umt5 import TEXT_LEN

END_ID = 1  # </s>
PAD_ID = 0
SPIECE_KEY = "spiece_model"


def clean_prompt(text: str) -> str:
    """Wan's ``whitespace`` cleaning: HTML entities decoded (twice, as the reference), runs of whitespace
    made one space, ends stripped."""
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def _sentencepiece():
    try:
        import sentencepiece
    except ImportError as err:
        raise InputError("sentencepiece", "is not installed (it reads the umT5 tokenizer that the text encoder "
                         "file carries)", "pip install sentencepiece (ComfyUI installs it already)") from err
    return sentencepiece


class UMT5Tokenizer:
    """Prompt -> umT5 token ids, from a serialized sentencepiece model."""

    def __init__(self, model_proto: bytes, max_length: int = TEXT_LEN):
        self.model_proto = model_proto
        self.max_length = max_length
        self._processor = None

    @property
    def processor(self):
        """The sentencepiece processor, made on first use (so loading needs no sentencepiece)."""
        if self._processor is None:
            self._processor = _sentencepiece().SentencePieceProcessor(model_proto=self.model_proto)
        return self._processor

    @classmethod
    def from_tensor(cls, tensor: torch.Tensor, max_length: int = TEXT_LEN) -> "UMT5Tokenizer":
        """From the ``spiece_model`` uint8 tensor of a Comfy-Org umT5 file."""
        return cls(tensor.to(torch.uint8).cpu().numpy().tobytes(), max_length)

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    def __call__(self, text: str) -> list[int]:
        """The ids of ``text``: pieces, then ``</s>``; truncated to ``max_length`` with ``</s>`` kept."""
        ids = list(self.processor.encode(clean_prompt(text)))
        return ids[:self.max_length - 1] + [END_ID]
