"""Figures of a run (ptycho.figures): training curve with the test SSIM, object and comparison panels."""
import numpy as np
import pytest

from ptycho import figures


def _truth(shape=(22, 28)):
    y, x = np.mgrid[:shape[0], :shape[1]]
    amp = 1.0 + 0.5 * np.sin(x / 3.0) * np.cos(y / 5.0)
    return (amp * np.exp(0.3j * np.sin(y / 4.0))).astype(np.complex64)


def test_training_figure_draws_losses_on_log_axis_and_ssim_on_a_second_axis():
    history = {"loss": [3.0, 2.0, 1.5], "val_loss": [3.5, None, 1.7], "test_ssim": [0.2, 0.25, 0.31],
               "learning_rate": [1e-3] * 3, "epochs_run": 3}
    fig = figures.training_figure(history)
    loss_ax, ssim_ax = fig.axes
    assert loss_ax.get_yscale() == "log" and ssim_ax.get_yscale() == "linear"
    lines = {line.get_label(): line for line in loss_ax.get_lines()}
    np.testing.assert_array_equal(lines["loss"].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(lines["loss"].get_ydata(), [3.0, 2.0, 1.5])
    np.testing.assert_array_equal(lines["val loss"].get_xdata(), [1, 3])  # the null epoch is left out
    (ssim_line,) = ssim_ax.get_lines()
    np.testing.assert_allclose(ssim_line.get_ydata(), [0.2, 0.25, 0.31])
    assert ssim_ax.get_ylim()[1] == 1.0
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["loss", "val loss", "test amplitude SSIM"]


def test_training_figure_without_ssim_has_one_axis_and_negative_nll_is_linear():
    """A negative (Poisson NLL without its constant) loss cannot go on a log axis: linear, and labelled so."""
    fig = figures.training_figure({"loss": [-2.0e5, -2.2e5], "val_loss": [-1.9e5, -2.1e5]})
    (ax,) = fig.axes
    assert ax.get_yscale() == "linear" and "linear axis" in ax.get_ylabel()
    assert figures.loss_axis_scale([-2.0e5, -1.9e5]) == "linear"
    assert figures.loss_axis_scale([0.0, 1.0]) == "linear"
    assert figures.loss_axis_scale([2.0, 0.5, float("nan")]) == "log"
    empty = figures.training_figure({})
    assert [t.get_text() for t in empty.axes[0].texts] == ["No epochs recorded"]


def test_object_figure_amplitude_and_phase_with_colour_bars_and_mask():
    obj = _truth()
    coverage = np.ones(obj.shape, bool)
    coverage[:2, :3] = False
    fig = figures.object_figure(obj, origin=(5.0, 8.0), coverage=coverage)
    amp_ax, phase_ax = fig.axes[:2]
    assert len(fig.axes) == 4  # two panels, two colour bars
    amp = amp_ax.get_images()[0].get_array()
    np.testing.assert_allclose(amp.data, np.abs(obj), rtol=1e-6)
    np.testing.assert_array_equal(np.ma.getmaskarray(amp), ~coverage)
    offset = np.angle(np.sum(obj[coverage]))  # the global phase offset is removed for display
    shown = phase_ax.get_images()[0].get_array().data
    np.testing.assert_allclose(shown, np.angle(obj * np.exp(-1j * offset)), atol=1e-6)
    assert amp_ax.get_images()[0].get_extent() == [4.5, 32.5, 29.5, 7.5]  # object pixels, 28 wide, 22 tall
    assert fig.axes[3].get_ylabel() == "phase (rad)"


def test_comparison_figure_truth_beside_aligned_reconstruction():
    truth = _truth()
    recon = truth * 3.0 * np.exp(-1.1j)
    fig = figures.comparison_figure(recon, truth, metrics={"amplitude_ssim": 0.876})
    panels = fig.axes[:4]
    images = [ax.get_images()[0].get_array() for ax in panels]
    np.testing.assert_allclose(images[0], np.abs(truth), rtol=1e-6)   # truth amplitude
    np.testing.assert_allclose(images[1], np.abs(truth), rtol=1e-5)   # reconstruction, gain removed
    np.testing.assert_allclose(images[3], np.angle(truth), atol=1e-5)  # reconstruction, phase offset removed
    assert "0.876" in panels[1].get_title()


def test_align_for_display_removes_gain_and_global_phase():
    truth = _truth()
    recon = truth * 3.0 * np.exp(-1.1j)
    np.testing.assert_allclose(figures.align_for_display(recon, truth), truth, rtol=1e-5, atol=1e-6)


def test_object_figure_removes_the_global_phase_offset_off_the_wrap():
    """An object whose phase sits at ±π (the star's, as reconstructed) is shown centred on 0, and a flat
    phase keeps a colour scale of at least ±0.25 rad so noise does not look like structure."""
    rng = np.random.default_rng(0)
    obj = np.exp(1j * (np.pi + 0.3 * rng.standard_normal((24, 24)))).astype(np.complex64)
    phase_ax = figures.object_figure(obj).axes[1]
    shown = phase_ax.get_images()[0].get_array().data
    assert abs(np.mean(shown)) < 0.05 and np.std(shown) == pytest.approx(0.3, rel=0.2)
    flat = figures.object_figure(np.ones((24, 24), np.complex64) * np.exp(1e-4j * rng.standard_normal((24, 24))))
    assert flat.axes[1].get_images()[0].get_clim() == pytest.approx((-0.25, 0.25))
