"""flite and festival back ends (CMU phone names; both run as subprocesses).

flite prints phones with end times (``-psdur``) but no word times: words are placed by a
segmentation of the phone sequence against the CMUdict pronunciations of the transcript's words.
festival runs a Scheme script per batch and prints each segment with its word item's id.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from ...audio import SAMPLE_RATE, load_audio
from .accented import ACCENTED_VOICES, SCHEME_HELPERS, scheme_table
from .base import CMU_TABLE, Rendered, Voice, assign_words, build_segments

FLITE_VOICES = ("awb", "rms", "slt", "kal16")
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
_DIPHONE_F0 = {"kal_diphone": 105.0, "ked_diphone": 105.0,
               **{v: sum(r) / 2 for v, (_, r) in ACCENTED_VOICES.items()}}


class Flite:
    """flite voices (clustergen ``awb``/``rms``/``slt`` and diphone ``kal16``)."""

    def render(self, text: str, voice: Voice) -> Rendered:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "u.wav"
            cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={voice.param('stretch', 1.0)}",
                   "--setf", f"int_f0_target_mean={voice.param('f0', 100.0)}", "-t", text, "-o", str(out), "-psdur"]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            wave = load_audio(out, SAMPLE_RATE)
        names, ends = [], []
        for tok in res.stdout.split():
            name, _, end = tok.rpartition(":")
            names.append(name)
            ends.append(float(end))
        starts = [0.0] + ends[:-1]
        words = text.split()
        owner = assign_words(names, CMU_TABLE, [(0, len(words))] * len(names), words)
        events = [(s, nm, o) for s, nm, o in zip(starts, names, owner)]
        phones, spans, raw = build_segments(events, CMU_TABLE, "flite", len(wave) / SAMPLE_RATE, words)
        return Rendered(wave, spans, phones, raw)


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Festival:
    """festival voices, many utterances per process (one Scheme script per batch).

    An accented voice (`accented.ACCENTED_VOICES`) speaks the English front end's segments,
    renamed to its own phones; the segments printed are the English ones, before renaming."""

    def render_batch(self, items: list[tuple[str, Voice]]) -> list[Rendered]:
        with tempfile.TemporaryDirectory() as tmp:
            lines = ["(define (dumpsegs utt) (mapcar (lambda (s) (format t \"SEG %s %f %s\\n\" (item.name s) "
                     "(item.feat s \"end\") (item.feat s \"R:SylStructure.parent.parent.id\"))) "
                     "(utt.relation.items utt 'Segment)))", SCHEME_HELPERS]
            for k, (text, voice) in enumerate(items):
                accented = voice.name in ACCENTED_VOICES
                lines.append("(voice_kal_diphone)" if accented else f"(voice_{voice.name})")
                if voice.name in _DIPHONE_F0:
                    f0 = voice.param("f0", _DIPHONE_F0[voice.name])
                    lines.append(f"(set! int_lr_params (list (list 'target_f0_mean {f0}) (list 'target_f0_std "
                                 f"{f0 * 0.14:.1f}) (list 'model_f0_mean 170) (list 'model_f0_std 34)))")
                lines.append(f"(Parameter.set 'Duration_Stretch {voice.param('stretch', 1.0)})")
                lines.append(f"(format t \"UTT {k}\\n\")")
                if accented:  # segments printed before they are renamed
                    lines += [f"(set! u (english_front {_scheme_string(text)}))", "(dumpsegs u)", f"(voice_{voice.name})",
                              f"(set! u (Wave_Synth (remap_segments u {scheme_table(ACCENTED_VOICES[voice.name][0])})))"]
                else:
                    lines += [f"(set! u (SynthText {_scheme_string(text)}))", "(dumpsegs u)"]
                lines.append(f"(utt.save.wave u \"{tmp}/{k}.wav\" 'riff)")
            script = Path(tmp) / "batch.scm"
            script.write_text("\n".join(lines) + "\n", encoding="utf-8")
            res = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True, check=True)
            parsed: dict[int, list[tuple[str, float, str]]] = {}
            cur = -1
            for line in res.stdout.splitlines():
                if line.startswith("UTT "):
                    cur = int(line.split()[1])
                    parsed[cur] = []
                elif line.startswith("SEG ") and cur >= 0:
                    _, name, end, wid = line.split()
                    parsed[cur].append((name, float(end), wid))
            out = []
            for k, (text, _voice) in enumerate(items):
                wave = load_audio(Path(tmp) / f"{k}.wav", SAMPLE_RATE)
                segs = parsed.get(k, [])
                names = [s[0] for s in segs]
                starts = [0.0] + [s[1] for s in segs[:-1]]
                order: dict[str, int] = {}
                ranges: list[tuple[int, int] | None] = []
                for _, _, wid in segs:  # festival's word items, in order
                    k = order.setdefault(wid, len(order)) if wid != "0" else -1
                    ranges.append((k, k + 1) if k >= 0 else None)
                words = text.split()
                owner = assign_words(names, CMU_TABLE, ranges, words)
                events = [(s, nm, o) for s, nm, o in zip(starts, names, owner)]
                phones, spans, raw = build_segments(events, CMU_TABLE, "festival", len(wave) / SAMPLE_RATE, words)
                out.append(Rendered(wave, spans, phones, raw))
            return out

