"""One image-diffusion core for MNIST, the CS180 runs and colour images, built on utils.py
(schedules, q_sample, samplers, EMA, atomic writes, the CLI helpers).

    unet.py     the UNet eps_theta(x_t, t, y): 1 or 3 channels, 28..128 pixels; MNISTUNet is one configuration
    data.py     CIFAR-10, STL-10 (torchvision) or any folder of images, center-cropped, in [-1, 1]
    presets.py  the named configurations (tutorial, cifar10-32, stl10-96, ffhq-128)
    trainer.py  the image trainer on utils.fit (the package's one loop): EMA, atomic checkpoints, --resume,
                per-sample seeds, DDP
    train.py    python -m image_diffusion.train --preset NAME [overrides]
    sample.py   python -m image_diffusion.sample --checkpoint RUN/model.pt: grids and trajectories (full chain
                or DDIM) of any UNet checkpoint, problem 5's included
    fid.py      python -m image_diffusion.fid: FID (pytorch-fid's Inception when its weights are here, else a
                labelled stand-in), PNGs for other tools, cached real statistics; the one Frechet distance

Timestep convention: utils.py's, t = 0..T with the network called on t in 1..T.
"""
