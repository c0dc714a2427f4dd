"""`semlab.downstream`: does a segmenter trained on synthetic SEM images work on real ones?

- `model`: the small U-Net segmenter (bf16, channels-last), `predict`, save/load;
- `data`: target domains (real dataset, simulated with a held-out test shift), training-set
  specs (`real`, `real:N`, `preset:NAME`, `render:NAME`, `gen:CKPT`, folders, `+` unions),
  the data-efficiency sampler, the augmentation;
- `train`: a fixed steps x batch budget, checkpoint chosen on the target's validation split;
- `score`: per-class IoU / Dice, defects as objects, bootstrap CIs, metrology differences;
- `experiment`: the data-efficiency experiment, its tidy table and summary;
- `cli`: `semlab downstream ...`; `bench`: `semlab bench downstream`.

Importing this package imports nothing heavy; import the submodules.
"""
