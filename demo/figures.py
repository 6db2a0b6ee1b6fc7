"""The demo's two pictures, drawn with matplotlib's Agg backend (no display needed).

* ``curves.png``: two panels side by side -- the training L1(SR, HR) of every run (the ``l_pix``
  term every method has) and the validation Y-PSNR on the held-out photos, per iteration, read
  from each run's ``train.log``; bicubic as a horizontal line.
* ``crops.png``: one row of panels showing the same crop of a held-out photo for every method,
  ``LR-bicubic | students... | teacher | HR``; each title gives the crop's own Y-PSNR. The crop is
  placed where the teacher improves most on bicubic (the largest mean of |HR - bicubic| -
  |HR - teacher| over the window): where there is something for the students to learn. No student
  takes part in the choice.
"""
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ckdsr.demo.logs import RunHistory

PANEL_INCHES = 2.2
DPI = 100
CURVES_SIZE = (12.0, 4.5)   # inches


def _pyplot():
    import matplotlib
    matplotlib.use('Agg', force=True)
    import matplotlib.pyplot as plt
    return plt


def plot_curves(histories: Sequence[Tuple[str, RunHistory]], path: Path, bicubic_psnr: Optional[float] = None,
                dataset: str = '') -> Dict[str, List[str]]:
    """Write ``curves.png``; returns the legend entries of each panel (for checks)."""
    plt = _pyplot()
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=CURVES_SIZE, dpi=DPI)
    legends: Dict[str, List[str]] = {'loss': [], 'psnr': []}
    for i, (label, hist) in enumerate(histories):
        style = {'color': f'C{i}', 'linestyle': '--' if i == 0 else '-', 'linewidth': 1.6}
        x, y = hist.curve('l_pix')
        if x:
            ax_loss.plot(x, y, label=label, **style)
            legends['loss'].append(label)
        x, y = hist.curve('psnr', source='validation')
        if x:
            ax_val.plot(x, y, marker='o', markersize=3, label=label, **style)
            legends['psnr'].append(label)
    if bicubic_psnr is not None:
        ax_val.axhline(bicubic_psnr, color='0.4', linestyle=':', linewidth=1.4, label='Bicubic')
        legends['psnr'].append('Bicubic')
    ax_loss.set_title('Training loss: L1(SR, HR), mean over each logging window')
    ax_loss.set_xlabel('iteration')
    ax_loss.set_ylabel('L1 (images in [0, 1])')
    ax_loss.set_yscale('log')
    ax_val.set_title(f'Validation Y-PSNR on the held-out photos{f" ({dataset})" if dataset else ""}')
    ax_val.set_xlabel('iteration')
    ax_val.set_ylabel('PSNR (dB), Y channel, crop border = scale')
    from matplotlib.ticker import MaxNLocator
    for ax in (ax_loss, ax_val):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, facecolor='white')
    plt.close(fig)
    return legends


def gain_box(hr: np.ndarray, base: np.ndarray, better: np.ndarray, size: int, margin: int = 0) -> Tuple[int, int]:
    """``(x, y)`` of the ``size`` x ``size`` window where ``better`` gains most on ``base``: the largest
    mean of ``|HR - base| - |HR - better|``, at least ``margin`` pixels from the border (the metrics'
    crop border)."""
    hr = hr.astype(np.float64)
    gain = (np.abs(hr - base) - np.abs(hr - better)).mean(axis=2)
    h, w = gain.shape
    size = min(size, h - 2 * margin, w - 2 * margin)
    if size < 1:
        raise ValueError(f'image {w}x{h} is too small for a crop with a {margin}px margin')
    integral = np.pad(gain, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    sums = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    sums = sums[margin:h - size - margin + 1, margin:w - size - margin + 1]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(x) + margin, int(y) + margin


def crop_psnr(sr: np.ndarray, hr: np.ndarray) -> float:
    from ckdsr.metrics import calculate_psnr
    return float(calculate_psnr(sr, hr, crop_border=0, test_y_channel=True))


def plot_crops(panels: Sequence[Tuple[str, np.ndarray]], hr: np.ndarray, box: Tuple[int, int], size: int,
               path: Path, title: str) -> List[str]:
    """Write ``crops.png``: one panel per ``(label, full SR image)`` then the HR; returns the panel titles."""
    plt = _pyplot()
    x, y = box
    hr_crop = hr[y:y + size, x:x + size]
    n = len(panels) + 1
    fig, axes = plt.subplots(1, n, figsize=(n * PANEL_INCHES, PANEL_INCHES + 0.9), dpi=DPI)
    titles = []
    for ax, (label, img) in zip(axes, list(panels) + [('HR', hr)]):
        crop = img[y:y + size, x:x + size]
        if crop.shape != hr_crop.shape:
            raise ValueError(f'crops: {label} is {img.shape[1]}x{img.shape[0]}, HR is {hr.shape[1]}x{hr.shape[0]}')
        text = label if label == 'HR' else f'{label}\n{crop_psnr(crop, hr_crop):.2f} dB'
        ax.imshow(crop, interpolation='nearest')
        ax.set_title(text, fontsize=9)
        ax.set_axis_off()
        titles.append(text)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.74, wspace=0.06)
    fig.savefig(path, dpi=DPI, facecolor='white')
    plt.close(fig)
    return titles
