"""Problems 1-4 of the homework: DDPM on two-pixel images, where the exact answer is known (gmm.py).

    trainer.py   the run: TrainConfig, train, checkpoints, the four files of `python train.py --T 50`
"""
