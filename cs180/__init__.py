"""CS180 project 5 (Berkeley, fall 2024) on MNIST: part A's editing techniques on problem 5's
class-conditional DDPM (the class label plays DeepFloyd's text prompt), and part B's UNets trained as the
handout says. Built on utils.py (schedules, the one sampler, guidance, EMA, utils.fit) and on what mnist/
shares (data, the metric classifier, checkpoint helpers); problem 5 imports nothing from here.

    techniques.py        part A's maths: forward noise, blur / one-step / iterative denoising, SDEdit,
                         translation, RePaint inpainting, visual anagrams, hybrids, the all-pairs sweeps,
                         PSNR and SSIM
    inputs.py            the images from outside MNIST: real handwriting (scikit-learn's UCI digits, upscaled),
                         a font letter, a photograph
    figures.py           the figure helpers of every page: image grids, success-rate heat maps, loss curves
    parta_context.py     what every part-A page reads (PartA: model, test digits, classifier) and its settings
    parta_denoising.py   pages A.1-A.6: forward process, denoising, iterative denoising, sampling
    parta_editing.py     pages A.7: SDEdit, own inputs, inpainting, translation
    parta_illusions.py   pages A.8-A.9: anagrams and hybrids over all label pairs, and the best pairs
    parta_judges.py      the judges part A's picks are read by (legibility, the 8 px 'from afar' vote)
    parta_picks.py       the one-off search of anagram and hybrid pairs, stored in parta_picks.json
    parta_pages.py       the report's opening page and part A's pages in order (python -m cs180.parta_pages)
    denoiser.py          B.1: the single-step denoising UNet (python -m cs180.denoiser)
    timecond.py          B.2: the time- and class-conditioned DDPM (python -m cs180.timecond)
    partb_pages.py       part B's pages (python -m cs180.partb_pages)

The shipped runs stay in mnist/reference/ (denoiser.pt, timecond.pt, timecond_class.pt), beside problem
5's model and the metric classifier; reference/MODEL_CARD.md there has their commands and numbers.
"""
