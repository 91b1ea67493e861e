"""``python -m edudiff.pretrained export CHECKPOINT OUT [--command ...]``: write a training checkpoint's EMA
weights as a shippable float16 file (plus its card data, OUT with ``.json``) and print the md5;
``python -m edudiff.pretrained score mnist``: sample the shipped model, score it and store the scores in the card;
``python -m edudiff.pretrained card mnist``: render the Markdown model card from the card's data;
``python -m edudiff.pretrained export-classifier runs/clf/classifier.pt OUT``: the same for a noisy classifier.
See :func:`edudiff.pretrained.export` and :func:`edudiff.pretrained.score`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..images.generate import parse_interval
from . import export, export_classifier, score, write_card


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edudiff.pretrained", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write the EMA weights of CHECKPOINT to OUT (float16) and print the md5")
    e.add_argument("checkpoint")
    e.add_argument("out")
    e.add_argument("--train-command", default="", help="the command that trained it (for the model card)")
    e.add_argument("--trained-on", default="", help="the machine it was trained on (for the model card)")
    ec = sub.add_parser("export-classifier", help="write a noisy classifier's checkpoint to OUT (float16), print md5")
    ec.add_argument("checkpoint")
    ec.add_argument("out")
    s = sub.add_parser("score", help="sample the shipped model NAME and store the classifier's scores in its card")
    s.add_argument("name", nargs="?", default="mnist")
    s.add_argument("--n", type=int, default=1000, help="samples (default 1000)")
    s.add_argument("--ddim-steps", type=int, default=25, help="DDIM steps (default 25)")
    s.add_argument("--cache-dir", help="where the classifier is cached (default <data root>/edudiff_cache)")
    s.add_argument("--guidance-scale", type=float, default=1.0, help="class-conditional models: the scale s")
    s.add_argument("--guidance-interval", metavar="LO,HI", help="guide only the steps LO < t <= HI")
    c = sub.add_parser("card", help="render NAME.md (and NAME_loss.png) from the card's data file")
    c.add_argument("name", nargs="?", default="mnist")
    c.add_argument("--notes", default="", help="a Markdown file appended to the card")
    args = p.parse_args(argv)
    if args.command == "export":
        md5 = export(args.checkpoint, args.out, command=args.train_command, trained_on=args.trained_on)
        print(f"{args.out}: {os.path.getsize(args.out):,} bytes, md5 {md5}")
    elif args.command == "export-classifier":
        md5 = export_classifier(args.checkpoint, args.out)
        print(f"{args.out}: {os.path.getsize(args.out):,} bytes, md5 {md5}")
    elif args.command == "card":
        notes = Path(args.notes).read_text(encoding="utf-8") if args.notes else ""
        print(write_card(args.name, notes="\n" + notes if notes else ""))
    else:
        scores = score(
            args.name,
            n=args.n,
            ddim_steps=args.ddim_steps,
            cache_dir=args.cache_dir,
            guidance_scale=args.guidance_scale,
            guidance_interval=None if args.guidance_interval is None else parse_interval(args.guidance_interval),
        )
        print(json.dumps(scores, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
