"""CodeCarbon side of `cargo xtask bench`: track an idle process for N seconds with
measure_power_secs=1 and count the hardware readings it takes (one per device per
measurement round), so both tools can be compared in samples per CPU-second."""

import argparse
import json
import logging
import time

from codecarbon import OfflineEmissionsTracker
from codecarbon.emissions_tracker import BaseEmissionsTracker

counts = {"rounds": 0, "readings": 0}
_orig = BaseEmissionsTracker._do_measurements


def _counted(self):
    counts["rounds"] += 1
    counts["readings"] += len(self._hardware)
    return _orig(self)


BaseEmissionsTracker._do_measurements = _counted


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA", measure_power_secs=1, save_to_file=False, log_level="error"
    )
    tracker.start()
    time.sleep(a.seconds)
    kg = tracker.stop()
    hw = [type(h).__name__ for h in tracker._hardware]
    with open(a.out, "w") as f:
        json.dump(
            {
                "measurements": counts["readings"],
                "rounds": counts["rounds"],
                "hardware": hw,
                "co2_kg": kg,
                "note": f"{counts['rounds']} rounds x {len(hw)} devices ({', '.join(hw)})",
            },
            f,
        )


if __name__ == "__main__":
    main()
