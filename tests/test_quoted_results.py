"""Numbers the docs and READMEs quote from benchmarks/results/*.json match those files: tables are
compared cell by cell (or rebuilt by the benchmark's own printer and found verbatim), sentences
are rebuilt from the file. A rerun that changes a result fails here until the docs follow."""

import json
import re

import pytest
from helpers import ROOT, benchmark_module

RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"

#: reward names as the docs' alignment table writes them
REWARD_NAMES = {"alignment": "shapes-alignment", "alignment (4 steps)": "shapes-alignment",
                "JPEG compressibility": "jpeg-compressibility", "colourfulness": "colourfulness"}


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_stored_results_were_measured_on_the_current_zoo_model(path):
    """A result stamped with a zoo model was measured on the weights the project ships now (a
    retrained model makes every stored claim on it stale), unless its stamp says otherwise."""
    import hashlib

    from difforge_zoo.models import model_path

    stamp = json.loads(path.read_text()).get("model")
    if stamp is None or "note" in stamp:
        return
    weights = model_path(stamp["name"]) / "unet" / "diffusion_pytorch_model.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest()[:12] == stamp["unet_sha256"], (
        f"{path.name}: measured on {stamp['name']} {stamp['unet_sha256']}; rerun its benchmark")


def _number(cell: str) -> list[float]:
    """The numbers of a table cell ("**−0.066 ± 0.032**" -> [-0.066, 0.032])."""
    text = cell.replace("−", "-").replace("*", "").replace("\u202f", "").replace(" ", "")
    return [float(x) for x in re.findall(r"[-+]?\d+\.\d+|[-+]?\d+", text)]


def _table(text: str, header: str) -> list[list[str]]:
    """The body rows of the markdown table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_alignment_table_matches_the_results_file():
    bench = benchmark_module("alignment")
    stored = json.loads((RESULTS / "alignment.json").read_text())
    summary = bench.summarise(stored["rows"])
    run, seen = None, set()
    for cells in _table((DOCS / "alignment.md").read_text(), "| run | reward | before | after | gain |"):
        label = cells[0]
        if label:
            if "†" in label:  # quoted from an earlier results file, and marked so
                run = None
                continue
            runs = [t for t in re.findall(r"`([^`]+)`", label) if t in bench.RUNS]
            assert len(runs) == 1, f"docs/alignment.md: row {label!r} names no single benchmark run"
            run = runs[0]
            seen.add(run)
        if run is None:
            continue
        entry = summary[run]["rewards"][REWARD_NAMES[cells[1]]]
        where = f"docs/alignment.md, {run}, {cells[1]}"
        assert _number(cells[2])[0] == pytest.approx(entry["before"], abs=5e-4), where
        assert _number(cells[3]) == pytest.approx(entry["after"], abs=5e-4), where
        assert _number(cells[4]) == pytest.approx(entry["gain"], abs=5e-4), where
        if label:
            assert int(cells[5]) == summary[run]["steps"], where
    missing = {r for r in summary if r not in bench.SUPERVISED_BASELINES.values()} - seen
    assert not missing, f"docs/alignment.md: runs of alignment.json missing from the table: {sorted(missing)}"


def test_alignment_baseline_and_slider_tables_are_the_printers_output():
    bench = benchmark_module("alignment")
    stored = json.loads((RESULTS / "alignment.json").read_text())
    docs = (DOCS / "alignment.md").read_text()
    assert bench.baseline_table(bench.compare_baselines(stored["rows"], stored["pools"], stored["samples"])) in docs
    for run in bench.SLIDERS:
        assert bench.slider_table(stored["rows"], run) in docs


def test_readme_alignment_and_freeze_guard_figures_match():
    readme = (ROOT / "README.md").read_text().replace("\n  ", " ")
    stored = json.loads((RESULTS / "alignment.json").read_text())
    summary, baselines = stored["summary"], stored["baselines"]
    seppo, pso = (summary[r]["rewards"]["shapes-alignment"] for r in ("seppo-heldout", "pso-heldout"))
    pso_gap = baselines["pso-heldout"]["rewards"]["shapes-alignment"]["difference"]
    sft_seppo = baselines["seppo-heldout"]["rewards"]["shapes-alignment"]["baseline"]
    assert (f"PSO lifts 4-step samples {pso['before']:.2f} → {pso['after'][0]:.2f} ± {pso['after'][1]:.2f}, "
            f"{pso_gap[0]:+.2f} ± {pso_gap[1]:.2f} over fine-tuning on its images") in readme
    assert (f"SePPO lifts alignment {seppo['before']:.2f} → {seppo['after'][0]:.2f} ± {seppo['after'][1]:.2f}, "
            f"which fine-tuning on the same images beats ({sft_seppo[0]:.2f} ± {sft_seppo[1]:.2f})") in readme
    guard = {r["mask"]: r for r in json.loads((RESULTS / "freeze_guard.json").read_text())["rows"]}
    protected = [guard[m]["protected"][0] for m in ("no mask", "random mask", "FreezeAsGuard mask")]
    legal = [guard[m]["legal"][0] for m in ("no mask", "random mask", "FreezeAsGuard mask")]
    sentence = (f"protected-domain fidelity after full fine-tuning {protected[0]:.2f} without a mask, "
                f"{protected[1]:.2f} under a random mask of the same size, {protected[2]:.2f} under the learned "
                f"mask; the legal domain's {legal[0]:.2f} / {legal[1]:.2f} / {legal[2]:.2f})")
    assert sentence in readme


def test_adapter_tables_are_the_printers_output():
    bench = benchmark_module("adapters")
    docs = (DOCS / "adapters.md").read_text()
    prior = json.loads((RESULTS / "dreambooth_prior.json").read_text())["prior_preservation"]
    assert bench.prior_table(prior) in docs
    without, with_prior = (next(r for r in prior["summary"] if r["prior_loss_weight"] == w)["class_prior"][0]
                           for w in (0.0, 1.0))
    readme = (ROOT / "README.md").read_text().replace("\n  ", " ")
    assert f'"a red circle" stays a red circle in {without:.2f} of samples, with it {with_prior:.2f}' in readme
    ip = json.loads((RESULTS / "ip_adapter.json").read_text())["ip_adapter"]
    assert bench.ip_table(ip) in docs
    assert bench.types_table(json.loads((RESULTS / "adapters_16x16.json").read_text())) in docs
    sc = json.loads((RESULTS / "sc_tuner_control.json").read_text())
    assert benchmark_module("sc_tuner_control").table(sc) in docs
    given = [run["mask_given"] for run in sc["runs"]]
    gains = sorted(g - sc["baselines"]["base_place_in_prompt"] for g in given)
    sentence = (f"(IoU {min(given):.2f} to {max(given):.2f} per seed); without the mask the same tuner draws it "
                f"anywhere ({sc['summary']['no_mask'][0]:.2f}, the base model {sc['baselines']['base_no_place']:.2f}). "
                f"Naming the place in the prompt, what a user of the base model would do instead, reaches "
                f"{sc['baselines']['base_place_in_prompt']:.2f}: the mask adds {gains[0]:+.2f} to {gains[-1]:+.2f}")
    assert sentence in docs.replace("\n", " ")
    readme = (ROOT / "README.md").read_text().replace("\n  ", " ")
    assert (f"(mask IoU {sc['summary']['mask_given'][0]:.2f} ± {sc['summary']['mask_given'][1]:.2f} over 3 seeds, "
            f"against {sc['baselines']['base_place_in_prompt']:.2f} for the base model") in readme


def test_adapter_interference_interval_is_quoted():
    bench = benchmark_module("adapters")
    inter = json.loads((RESULTS / "adapters_16x16.json").read_text())["interference"]
    assert bench.interference_sentence(inter) in (DOCS / "adapters.md").read_text().replace("\n", " ")


def test_align_readme_quotes_the_baselines():
    readme = (ROOT / "packages" / "align" / "README.md").read_text().replace("\n", " ")
    baselines = json.loads((RESULTS / "alignment.json").read_text())["baselines"]
    for run, reward in (("dpo", "shapes-alignment"), ("pso-heldout", "shapes-alignment"),
                        ("seppo-heldout", "shapes-alignment"), ("ddpo-compressibility", "jpeg-compressibility"),
                        ("pso-heldout-lcm", "shapes-alignment"),
                        ("rlcm-compressibility-lcm", "jpeg-compressibility")):
        mean, std = baselines[run]["rewards"][reward]["difference"]
        assert f"{mean:+.3f} ± {std:.3f}" in readme, run


@pytest.mark.parametrize("run,decimals", [("dpo", 3), ("pso-heldout", 3), ("seppo-heldout", 3),
                                          ("pso-heldout-lcm", 3)])
def test_alignment_prose_quotes_the_per_seed_differences(run, decimals):
    """The "every seed: a / b / c" figures of docs/alignment.md's baseline notes."""
    bench = benchmark_module("alignment")
    rows = json.loads((RESULTS / "alignment.json").read_text())["rows"]
    quoted = " / ".join(f"{d:+.{decimals}f}" for d in bench.seed_differences(rows, run, "shapes-alignment"))
    docs = (DOCS / "alignment.md").read_text().replace("−", "-").replace("\n  ", " ")
    assert quoted in docs, (run, quoted)


def test_steering_tables_are_quoted():
    bench = benchmark_module("steering")
    results = json.loads((RESULTS / "steering.json").read_text())
    docs = (DOCS / "steering.md").read_text()
    assert bench.tables(results) in docs
    summary = results["summary"]
    fk, dpo = summary["shapes-alignment"]["fk 2"]["rewards"]["shapes-alignment"], results["fine_tuned"]["dpo"]
    assert f"2 particles (50 NFE) reaches alignment {fk[0]:.3f} ± {fk[1]:.3f}" in docs.replace("\n  ", " ")
    assert f"({dpo[0]:.3f} ± {dpo[1]:.3f} at 25 NFE" in docs.replace("\n  ", " ")
    readme = (ROOT / "packages" / "steer" / "README.md").read_text()
    assert bench.summary_table(results) in readme


def test_sampler_tables_are_quoted():
    bench = benchmark_module("samplers")
    results = json.loads((RESULTS / "samplers.json").read_text())
    docs = (DOCS / "samplers.md").read_text()
    assert bench.tables(results) in docs
    by_sampler = results["summary"]["samplers"]

    def rmse(sampler, nfe):
        mean, std = by_sampler[sampler][str(nfe)]["rmse"]
        return f"{mean:.3f} ± {std:.3f}"

    text = docs.replace("\n  ", " ")
    assert f"({rmse('dc-solver', 20)} against {rmse('unipc', 20)})" in text
    dc, unipc = by_sampler["dc-solver"]["4"]["rmse"][0], by_sampler["unipc"]["4"]["rmse"][0]
    assert f"(4 NFE: {dc:.3f} against {unipc:.3f})" in text


def test_solvers_readme_quotes_the_sampler_results():
    by_sampler = json.loads((RESULTS / "samplers.json").read_text())["summary"]["samplers"]
    readme = (ROOT / "packages" / "solvers" / "README.md").read_text()
    for nfe in (4, 10, 20):
        cells = " | ".join(f"{by_sampler[s][str(nfe)]['rmse'][0]:.3f}" for s in ("ddim", "dpm-solver++", "unipc",
                                                                                   "dc-solver"))
        assert f"| {nfe} | {cells} |" in readme


def test_canvas_docs_and_readme_quote_the_canvas_results():
    bench = benchmark_module("canvas")
    results = json.loads((RESULTS / "canvas.json").read_text())
    docs = (DOCS / "canvas.md").read_text()
    assert bench.tables(results) in docs
    panorama, composite = results["summary"]["panorama"], results["summary"]["composite"]
    text = docs.replace("\n  ", " ")
    assert (f"wrap seam is {panorama['multidiffusion']['seam_ratio'][0]:.1f} column steps" in text
            and f"({panorama['direct']['seam_ratio'][0]:.1f})" in text)
    assert (f"StitchDiffusion brings it to {panorama['stitchdiffusion']['seam_ratio'][0]:.1f} "
            f"({panorama['stitchdiffusion']['wrap_seam_error'][0]:.3f} against "
            f"{panorama['multidiffusion']['wrap_seam_error'][0]:.3f})") in text
    assert f"alignment {composite['single-prompt']['segment_alignment'][0]:.3f})" in text
    assert f"reaches {composite['harmonise-only']['segment_alignment'][0]:.3f}" in text
    assert (f"({composite['composite']['segment_alignment'][0]:.3f}, both halves right in "
            f"{composite['composite']['both_right'][0]:.0%} of the images against "
            f"{composite['harmonise-only']['both_right'][0]:.0%})").replace("%", " %") in text
    readme = (ROOT / "packages" / "canvas" / "README.md").read_text()
    assert (f"MultiDiffusion {panorama['multidiffusion']['seam_ratio'][0]:.3f}, the UNet on the whole canvas "
            f"{panorama['direct']['seam_ratio'][0]:.3f} | StitchDiffusion "
            f"{panorama['stitchdiffusion']['seam_ratio'][0]:.3f} |") in readme
    assert (f"one prompt for the layout {composite['single-prompt']['segment_alignment'][0]:.3f}, harmonising only "
            f"{composite['harmonise-only']['segment_alignment'][0]:.3f} | Composite Diffusion "
            f"{composite['composite']['segment_alignment'][0]:.3f} |") in readme
    assert (f"(boundary step {composite['composite']['boundary_step'][0]:.3f} against "
            f"{composite['single-prompt']['boundary_step'][0]:.3f})") in readme.replace("\n", " ")


def test_canvas_docs_and_readme_quote_the_high_resolution_results():
    highres = json.loads((RESULTS / "canvas.json").read_text())["summary"]["highres"]
    text = (DOCS / "canvas.md").read_text().replace("\n  ", " ")

    def value(method, metric):
        return highres[method][metric][0]

    assert (f"repeats objects in {value('naive', 'repetition'):.0%} of the images "
            f"({value('naive', 'count_error'):.3f} objects off the prompt's count, alignment "
            f"{value('naive', 'alignment'):.3f})").replace("%", " %") in text
    assert (f"(extra objects in {value('diffusehigh', 'repetition'):.0%}, count error "
            f"{value('diffusehigh', 'count_error'):.3f}, alignment {value('diffusehigh', 'alignment'):.3f})"
            ).replace("%", " %") in text
    assert (f"({value('upsample', 'alignment'):.3f}, extra objects in {value('upsample', 'repetition'):.0%})"
            ).replace("%", " %") in text
    assert (f"(count error {value('naive+attention', 'count_error'):.3f} against "
            f"{value('naive', 'count_error'):.3f})") in text
    moved = value("diffusehigh+attention", "alignment") - value("diffusehigh", "alignment")
    assert (f"moves alignment by {moved:.3f} ({value('diffusehigh+attention', 'alignment'):.3f} against "
            f"{value('diffusehigh', 'alignment'):.3f})") in text
    readme = (ROOT / "packages" / "canvas" / "README.md").read_text()
    assert (f"| naive {value('naive', 'repetition'):.3f}, naive + attention scaling "
            f"{value('naive+attention', 'repetition'):.3f} | DiffuseHigh {value('diffusehigh', 'repetition'):.3f} "
            f"(upsampling the native image: {value('upsample', 'repetition'):.3f}) |") in readme


def test_canvas_docs_and_readme_quote_the_cow_results():
    cow = json.loads((RESULTS / "canvas.json").read_text())["summary"]["cow"]
    text = (DOCS / "canvas.md").read_text().replace("\n  ", " ")

    def value(method, metric, decimals=3):
        return f"{cow[method][metric][0]:.{decimals}f}"

    assert (f"(condition object right {value('prompt-only', 'condition_kept')}, alignment "
            f"{value('prompt-only', 'alignment')})") in text
    assert (f"({value('sdedit', 'condition_kept')}; condition PSNR {value('sdedit', 'condition_psnr', 1)} dB against "
            f"the prompt's {value('prompt-only', 'condition_psnr', 1)})") in text
    assert (f"COW keeps it in {cow['cow']['condition_kept'][0]:.0%} of the images (condition PSNR "
            f"{value('cow', 'condition_psnr', 1)} dB) and lifts alignment to {value('cow', 'alignment')}"
            ).replace("%", " %") in text
    assert (f"({value('cow', 'other_object_right')} against {value('prompt-only', 'other_object_right')},") in text
    assert (f"({value('paste-and-replace', 'condition_kept')}, {value('paste-and-replace', 'condition_psnr', 1)} dB, "
            f"prompted object {value('paste-and-replace', 'other_object_right')}, alignment "
            f"{value('paste-and-replace', 'alignment')})") in text
    readme = (ROOT / "packages" / "canvas" / "README.md").read_text()
    assert (f"| prompt only {value('prompt-only', 'condition_kept')}, SDEdit from the pasted image "
            f"{value('sdedit', 'condition_kept')}, paste-and-replace {value('paste-and-replace', 'condition_kept')} "
            f"| COW {value('cow', 'condition_kept')} |") in readme
    assert (f"(alignment {value('paste-and-replace', 'alignment')} against COW's {value('cow', 'alignment')})"
            in readme.replace("\n", " "))


def _summary_means(name: str, keys: tuple[str, ...], metric: str):
    """A benchmark's stored summary table in its docs page's form: ``value(*key, metric=metric)``,
    the mean of ``metric`` in the row whose ``keys`` fields equal ``key``, to 3 decimals."""
    results = json.loads((RESULTS / f"{name}.json").read_text())
    summary = {tuple(row[k] for k in keys): row for row in results["summary"]}

    def value(*key, metric=metric):
        return f"{summary[key][metric][0]:.3f}"

    return benchmark_module(name).tables(results), value


def test_steering_docs_and_the_steer_readme_quote_the_ppap_results():
    tables, value = _summary_means("ppap", ("method", "scale"), "target_rate")
    docs = (DOCS / "steering.md").read_text()
    assert tables in docs
    text = docs.replace("\n  ", " ")
    assert f"moves the target rate from {value('base', 0.0)} to {value('clean', 16.0)} at scale 16" in text
    assert f"data-free experts reach {value('ppap', 16.0)}, with objects kept" in text
    assert (f"reaches {value('single', 16.0)} at scale 16 and {value('single', 4.0)} at scale 4 (PPAP "
            f"{value('ppap', 16.0)}, {value('ppap', 4.0)})") in text
    readme = (ROOT / "packages" / "steer" / "README.md").read_text().replace("\n", " ")
    assert (f"base {value('base', 0.0)}, clean classifier {value('clean', 16.0)}, single noise-aware guider "
            f"{value('single', 16.0)}, PPAP's five experts {value('ppap', 16.0)} (scale 16)") in readme


def test_samplers_docs_quote_the_boundary_results():
    tables, value = _summary_means("boundary", ("steps", "method"), "alignment")
    docs = (DOCS / "samplers.md").read_text()
    assert tables in docs
    text = docs.replace("\n  ", " ")
    assert f"at 4 steps alignment {value(4, 'obc')} against {value(4, 'random')} from random noise" in text
    assert f"10 steps {value(10, 'obc')} against {value(10, 'random')}" in text


def test_samplers_docs_quote_the_restoration_results():
    results = json.loads((RESULTS / "restoration.json").read_text())
    summary = {(row["method"], row["nfe"]): row for row in results["summary"]}

    def value(method, nfe, metric="psnr", digits=2):
        return f"{summary[(method, nfe)][metric][0]:.{digits}f}"

    docs = (DOCS / "samplers.md").read_text()
    assert benchmark_module("restoration").tables(results) in docs
    text = docs.replace("\n  ", " ")
    assert (f"at 5 NFE {value('mrs-data-ode', 5)} dB against {value('euler-maruyama', 5)} for Euler-Maruyama and "
            f"{value('euler-ode', 5)} for Euler on the ODE; at 20 NFE {value('mrs-data-ode', 20)} dB, level with "
            f"Euler-Maruyama at 100 NFE ({value('euler-maruyama', 100)}), and at 10 NFE within 0.7 dB of it "
            f"({value('mrs-data-ode', 10)})") in text
    assert (f"at 5 NFE ({value('mrs-data-ode', 5, 'ode_rmse', 4)}) lies between Euler's at 50 and 100 NFE "
            f"({value('euler-ode', 50, 'ode_rmse', 4)}, {value('euler-ode', 100, 'ode_rmse', 4)})") in text
    assert f"(5 NFE: noise {value('mrs-noise-ode', 5)}, data {value('mrs-data-ode', 5)} dB)" in text
    assert (f"lifts held-out PSNR from {value('mrs-data-ode', 5)} to {value('obc', 5)} dB at 5 NFE and from "
            f"{value('mrs-data-ode', 10)} to {value('obc', 10)} at 10") in text
    assert (f"scores {value('obc', 5, 'reference_best')} dB against {value('obc', 5, 'reference_mean')} for the "
            "average candidate (5 NFE)") in text
    assert f"(the bicubic input {value('bicubic', 0, 'recovered', 3)})" in text
    solvers = (ROOT / "packages" / "solvers" / "README.md").read_text()
    for nfe in (5, 10):
        assert (f"| {nfe} | {value('euler-maruyama', nfe)} | {value('euler-ode', nfe)} | {value('mrs-data-ode', nfe)} "
                f"| {value('obc', nfe)} |") in solvers
    assert (f"| 20 | {value('euler-maruyama', 20)} | {value('euler-ode', 20)} | {value('mrs-data-ode', 20)} "
            "| – |") in solvers
    assert f"| 100 | {value('euler-maruyama', 100)} | {value('euler-ode', 100)} | – | – |" in solvers
    assert f"The bicubic input scores {value('bicubic', 0)} dB." in solvers
    readme = (ROOT / "README.md").read_text().replace("\n  ", " ")
    gain = summary[("obc", 5)]["psnr"][0] - summary[("mrs-data-ode", 5)]["psnr"][0]
    assert (f"at 5 NFE {value('mrs-data-ode', 5)} dB against {value('euler-maruyama', 5)} for IR-SDE's "
            f"Euler-Maruyama") in readme and f"+{gain:.1f} dB on that super-resolution at 5 NFE" in readme
    card = (ROOT / "packages" / "zoo" / "src" / "difforge_zoo" / "models" / "shapes-sr-mr").joinpath
    metrics = json.loads(card("metrics.json").read_text())
    assert f"| MR Sampler, 10 NFE | {metrics['mrs_10']['psnr']:.2f} |" in card("README.md").read_text()
