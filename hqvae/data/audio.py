"""Audio: WAV files in and out, log-mel spectrograms scaled to [0, 1], and their inverse.

:class:`LogMel` turns a waveform into a (n_mels, frames) image in [0, 1]; its parameters, with
defaults chosen for 8 kHz speech such as the Free Spoken Digit Dataset:

==============  =========  ===============================================================
parameter       default    meaning
==============  =========  ===============================================================
sample_rate     8000       Hz; input must already have this rate (no resampling)
n_fft           256        STFT size = window length (32 ms); periodic Hann window
hop_length      64         samples between frames (8 ms)
n_mels          80         triangular filters, equally spaced on the HTK mel scale
                           ``mel(f) = 2595 log10(1 + f / 700)``, peak 1 (not area-normalised)
f_min, f_max    0, None    filter bank edges in Hz (None = sample_rate / 2)
db_min, db_max  -80, 40    the fixed dB range mapped to [0, 1]
frames          128        fixed number of frames T (a multiple of 16); None keeps 1 + S // hop
==============  =========  ===============================================================

Steps: the waveform (float, full scale ±1) is first cut or padded to ``(frames - 1) · hop_length``
samples: a longer clip keeps its centre, a shorter one is padded with silence at the end.
Then the power spectrogram ``|STFT|²`` (``torch.stft``, ``center=True``, reflect padding, no
normalisation), the mel filter bank, ``dB = 10 log10(max(mel, 1e-10))``, and finally
``clamp((dB - db_min) / (db_max - db_min), 0, 1)``.  With the defaults a clip becomes 1×80×128
(1.016 s); 0.6% of FSDD clips are longer and are cut.  On FSDD 99.9% of the dB values lie
in −74…18 dB and the largest is 29 dB, so nothing saturates at 1; padded silence sits at 0.

:meth:`LogMel.inverse` undoes the scaling, maps mel power back to linear-frequency power with
the filter bank's pseudo-inverse (negative values set to 0) and runs Griffin-Lim, so that a
reconstruction can be listened to (:func:`write_wav`).  Phase is not stored, so the result
sounds rougher than the original even for a perfect spectrogram.

WAV files are read and written with the standard library's :mod:`wave` module: PCM with 8-,
16-, 24- or 32-bit integer samples; written files are 16-bit PCM.
"""

import math
import os
import wave

import numpy as np
import torch
from torch import nn

from hqvae.data.errors import CorruptFileError

AMIN = 1e-10  # power floor before the logarithm (-100 dB)


def read_wav(path: str | os.PathLike) -> tuple[torch.Tensor, int]:
    """Read a PCM WAV file: float32 (channels, samples) in [-1, 1] and the sample rate in Hz."""
    try:
        with wave.open(os.fspath(path), "rb") as f:
            channels, width, rate, count = f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()
            raw = f.readframes(count)
    except (wave.Error, EOFError, OSError, RuntimeError, ValueError) as error:  # wave raises all of these
        raise CorruptFileError(f"{path}: not a readable PCM WAV file ({error}); only uncompressed integer PCM "
                               f"is supported: convert the file (e.g. with sox) or remove it") from error
    if len(raw) != count * channels * width:
        raise CorruptFileError(f"{path}: the header promises {count} frames but the data stop after "
                               f"{len(raw) // max(channels * width, 1)}; the file is truncated")
    if width == 3:  # 24-bit samples become the top three bytes of 32-bit ones
        raw, width = np.pad(np.frombuffer(raw, np.uint8).reshape(-1, 3), ((0, 0), (1, 0))).tobytes(), 4
    if width == 1:
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    else:
        samples = np.frombuffer(raw, f"<i{width}").astype(np.float32) / 2 ** (8 * width - 1)
    return torch.from_numpy(samples.reshape(-1, channels).T.copy()), rate


def write_wav(path: str | os.PathLike, samples: torch.Tensor, sample_rate: int) -> None:
    """Write float samples (S,) or (channels, S), full scale ±1 (clipped), as 16-bit PCM WAV."""
    samples = torch.atleast_2d(torch.as_tensor(samples).detach().cpu().float())
    pcm = (samples.clamp(-1, 1) * 32767).round().to(torch.int16).T.contiguous().numpy()
    with wave.open(os.fspath(path), "wb") as f:
        f.setnchannels(samples.shape[0])
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.astype("<i2").tobytes())


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """Triangular HTK-mel filters of peak 1, float32 (n_fft // 2 + 1, n_mels)."""
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, f_max={f_max}")
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_min, mel_max = (2595.0 * torch.log10(1.0 + torch.tensor([f_min, f_max]) / 700.0)).tolist()  # HTK mel scale
    edges = 700.0 * (10.0 ** (torch.linspace(mel_min, mel_max, n_mels + 2, dtype=torch.float64) / 2595.0) - 1.0)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0).float()


def griffin_lim(magnitude: torch.Tensor, n_fft: int, hop_length: int, n_iter: int = 32, momentum: float = 0.99,
                length: int | None = None, seed: int = 0) -> torch.Tensor:
    """Waveform (..., S) whose STFT magnitude approximates ``magnitude`` (..., n_fft // 2 + 1, T).

    Fast Griffin-Lim (Perraudin et al. 2013) with ``momentum``, a periodic Hann window and
    ``center=True``, starting from random phases drawn with ``seed``.
    """
    window = torch.hann_window(n_fft, device=magnitude.device)
    generator = torch.Generator().manual_seed(seed)
    phase = torch.rand(magnitude.shape, generator=generator) * (2 * math.pi)
    angles = torch.polar(torch.ones_like(magnitude), phase.to(magnitude.device))
    batch_shape = magnitude.shape[:-2]
    magnitude = magnitude.reshape(-1, *magnitude.shape[-2:])
    angles = angles.reshape(magnitude.shape)
    previous = torch.zeros_like(angles)
    for _ in range(n_iter):
        signal = torch.istft(magnitude * angles, n_fft, hop_length, window=window, length=length)
        rebuilt = torch.stft(signal, n_fft, hop_length, window=window, return_complex=True)
        angles = rebuilt - previous * (momentum / (1 + momentum))
        angles = angles / (angles.abs() + 1e-16)
        previous = rebuilt
    signal = torch.istft(magnitude * angles, n_fft, hop_length, window=window, length=length)
    return signal.reshape(*batch_shape, signal.shape[-1])


class LogMel(nn.Module):
    """Waveform → log-mel spectrogram in [0, 1], and back; parameters in the module docstring.

    ``forward``: float (..., S) → float32 (..., n_mels, T).  ``inverse``: the reverse, via
    Griffin-Lim.
    """

    def __init__(self, sample_rate: int = 8000, n_fft: int = 256, hop_length: int = 64, n_mels: int = 80,
                 f_min: float = 0.0, f_max: float | None = None, db_min: float = -80.0, db_max: float = 40.0,
                 frames: int | None = 128):
        super().__init__()
        if db_max <= db_min:
            raise ValueError(f"need db_min < db_max, got {db_min} and {db_max}")
        if frames is not None and frames < 2:
            raise ValueError(f"frames must be at least 2, got {frames}")
        self.sample_rate, self.n_fft, self.hop_length, self.n_mels = sample_rate, n_fft, hop_length, n_mels
        self.f_min, self.f_max = f_min, (sample_rate / 2 if f_max is None else f_max)
        self.db_min, self.db_max, self.frames = db_min, db_max, frames
        filters = mel_filterbank(sample_rate, n_fft, n_mels, f_min, self.f_max)
        self.register_buffer("filters", filters, persistent=False)
        self.register_buffer("inverse_filters", torch.linalg.pinv(filters.double().T).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def config(self) -> dict:
        """The parameters, e.g. to record with a data set or a checkpoint."""
        names = ("sample_rate", "n_fft", "hop_length", "n_mels", "f_min", "f_max", "db_min", "db_max", "frames")
        return {name: getattr(self, name) for name in names}

    @property
    def num_samples(self) -> int | None:
        """Samples per clip after cutting or padding, or None when ``frames`` is None."""
        return None if self.frames is None else (self.frames - 1) * self.hop_length

    def fix_length(self, samples: torch.Tensor) -> torch.Tensor:
        """Cut (keeping the centre) or pad (with trailing zeros) (..., S) to ``num_samples``."""
        target = self.num_samples
        if target is None or samples.shape[-1] == target:
            return samples
        if samples.shape[-1] > target:
            start = (samples.shape[-1] - target) // 2
            return samples[..., start:start + target]
        return nn.functional.pad(samples, (0, target - samples.shape[-1]))

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        samples = self.fix_length(samples.float())
        if samples.shape[-1] <= self.n_fft // 2:
            raise ValueError(f"a clip of {samples.shape[-1]} samples is too short for n_fft={self.n_fft}")
        batch_shape = samples.shape[:-1]
        spectrum = torch.stft(samples.reshape(-1, samples.shape[-1]), self.n_fft, self.hop_length,
                              window=self.window, return_complex=True)
        power = spectrum.real.square() + spectrum.imag.square()
        mel = torch.einsum("fm,bft->bmt", self.filters, power)
        db = 10.0 * torch.log10(mel.clamp(min=AMIN))
        scaled = ((db - self.db_min) / (self.db_max - self.db_min)).clamp(0, 1)
        return scaled.reshape(*batch_shape, *scaled.shape[-2:])

    def inverse(self, spectrogram: torch.Tensor, n_iter: int = 32, seed: int = 0) -> torch.Tensor:
        """Waveform (..., S) from a [0, 1] spectrogram (..., n_mels, T) by Griffin-Lim (``n_iter`` rounds)."""
        db = spectrogram.float().clamp(0, 1) * (self.db_max - self.db_min) + self.db_min
        mel = 10.0 ** (db / 10.0)
        power = torch.einsum("fm,...mt->...ft", self.inverse_filters, mel).clamp(min=0)
        length = (spectrogram.shape[-1] - 1) * self.hop_length
        return griffin_lim(power.sqrt(), self.n_fft, self.hop_length, n_iter=n_iter, length=length, seed=seed)


def log_mel(samples: torch.Tensor, **params) -> torch.Tensor:
    """``LogMel(**params)(samples)``: float (..., S) → (..., n_mels, T) in [0, 1]."""
    return LogMel(**params)(samples)


def mel_to_audio(spectrogram: torch.Tensor, n_iter: int = 32, seed: int = 0, **params) -> torch.Tensor:
    """``LogMel(**params).inverse(spectrogram)``: a [0, 1] log-mel spectrogram back to a waveform."""
    return LogMel(**params).inverse(spectrogram, n_iter=n_iter, seed=seed)
