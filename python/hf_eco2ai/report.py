"""The end-of-run summary: kWh, CO2, samples/kWh and cost from the probe's totals."""

from . import carbon


def summarise(session, config, samples=None, gpu_count=None):
    live = session.live() or {}
    energy_j = float(live.get("energy_j", 0.0))
    elapsed_h = float(live.get("elapsed_s", 0.0)) / 3600.0
    gpus = gpu_count if gpu_count is not None else len(session.meta.get("gpus", []))
    fp = carbon.footprint(
        energy_j,
        config.intensity_g_per_kwh(),
        pue=config.pue,
        price_per_kwh=config.price_per_kwh,
        gpu_hours=gpus * elapsed_h,
        gpu_hour_usd=config.gpu_hour_usd,
    )
    samples = samples if samples is not None else int(live.get("samples", 0))
    costs = [c for c in (fp["energy_usd"], fp["compute_usd"]) if c is not None]
    return {
        "project_name": config.project_name,
        "model_name": config.model_name,
        "run_dir": session.run_dir,
        "duration_s": float(live.get("elapsed_s", 0.0)),
        "energy_kwh": fp["energy_kwh"],
        "gpu_energy_kwh": float(live.get("gpu_energy_j", 0.0)) / carbon.J_PER_KWH * config.pue,
        "cpu_energy_kwh": float(live.get("cpu_energy_j", 0.0)) / carbon.J_PER_KWH * config.pue,
        "co2_kg": fp["co2_kg"],
        "grid_intensity_g_per_kwh": config.intensity_g_per_kwh(),
        "steps": int(live.get("steps", 0)),
        "samples": samples,
        "samples_per_kwh": samples / fp["energy_kwh"] if fp["energy_kwh"] > 0 else None,
        "cost": {"energy_usd": fp["energy_usd"], "compute_usd": fp["compute_usd"], "total_usd": sum(costs) if costs else None},
        "sources": sorted(live.get("devices_j", {}).keys()),
    }


def co2_so_far_kg(session, config):
    """CO2 of the run so far from the probe's live totals, or None if unknown yet."""
    live = session.live()
    intensity = config.intensity_g_per_kwh()
    if live is None or intensity is None:
        return None
    return carbon.footprint(float(live.get("energy_j", 0.0)), intensity, pue=config.pue)["co2_kg"]


def one_line(summary):
    co2 = summary["co2_kg"]
    spk = summary["samples_per_kwh"]
    cost = summary["cost"]["total_usd"]
    return (
        f"hf-eco2ai: {summary['energy_kwh']:.6f} kWh, "
        + (f"{co2:.6f} kg CO2, " if co2 is not None else "CO2 unknown (no country/region), ")
        + (f"{spk:,.0f} samples/kWh, " if spk is not None else "")
        + (f"${cost:.4f}, " if cost is not None else "")
        + f"{summary['steps']} steps; run {summary['run_dir']}"
    )
