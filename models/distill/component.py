"""The interface every distillation component implements."""
from typing import Any, Dict, Iterable, List

import torch
from torch import nn

from ckdsr.models.signals import Provider


class Component:
    """A piece of a distillation method: providers, optional trainable parts, hooks, state.

    Frozen networks held by a component are not part of :meth:`state_dict` (they are reloaded
    from their option paths); trainable ones and method state (history model, discriminator and
    its optimizer) are.
    """

    name = 'component'

    def providers(self) -> List[Provider]:
        return []

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        """Parameters optimised together with the student (e.g. FACD's regressor)."""
        return []

    def late_signals(self) -> Iterable[str]:
        """Signals computed only after an intermediate optimizer step: the terms that read them
        (directly or through other signals) are back-propagated after the other terms' backward and
        an optimizer step whose gradient is kept (DUKD's released code: two steps per iteration)."""
        return ()

    def before_step(self, model, current_iter: int) -> None:
        pass

    def after_step(self, model, current_iter: int) -> None:
        pass

    def logs(self) -> Dict[str, Any]:
        """Detached values to log with this step's losses (e.g. a discriminator's loss); not summed."""
        return {}

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


def load_generator_state(generator: torch.Generator, state: Dict[str, Any]) -> None:
    """Restore ``state['generator']`` (what ``generator.get_state()`` saved), if there is one, moved
    back to the CPU first: a checkpoint's ``map_location`` may have moved it."""
    if 'generator' in state:
        saved = state['generator']
        generator.set_state(saved.cpu() if hasattr(saved, 'cpu') else saved)


class SeededComponent(Component):
    """A component whose resume state is its random generator ``self.generator`` alone."""

    generator: torch.Generator

    def state_dict(self) -> Dict[str, Any]:
        return {'generator': self.generator.get_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        load_generator_state(self.generator, state)
