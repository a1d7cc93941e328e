"""Problems 1-4 of the homework: DDPM on two-pixel images, where the exact answer is known (gmm.py).

    trainer.py   the run: TrainConfig, train, checkpoints, the four files of `python train.py --T 50`
    figures.py   what the pages share: Settings (visualize.py's command line), model paths, style, drawing
    problem1.py  .. problem4.py: one report page each, page(cfg, models) -> report.pages.Page; measured,
                 then drawn, then written up (`python visualize.py --problem N` is their command line)
"""
