"""make demo's report: every row of its table prints the mean colour offset (issue 18)."""
from ckdsr.demo.report import MethodRow, format_table, markdown_table


def test_every_table_row_prints_its_colour_offset():
    rows = [MethodRow('bicubic', 'Bicubic', psnr=28.0, ssim=0.78, colour_shift=(0.04, -0.06, 0.0)),
            MethodRow('dckd', 'D', 'EDSR 4x16', psnr=28.4, ssim=0.80, steps=300, colour_shift=(2.04, -1.26, 0.3))]
    md = markdown_table(rows, (320, 180), 4).splitlines()
    assert '| Colour R, G, B |' in md[0] and md[1].count('---') == 9
    assert '| +0.0, -0.1, +0.0 |' in md[2] and '| +2.0, -1.3, +0.3 |' in md[3]
    console = format_table(rows, (320, 180), 4).splitlines()
    assert 'Colour R, G, B' in console[0] and '+2.0, -1.3, +0.3' in console[3]
