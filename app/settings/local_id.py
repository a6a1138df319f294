"""This machine's site name: a readable three-word slug, like OpenPype's local id.

OpenPype names each artist machine with ``coolname.generate_slug(3)`` (e.g.
``brave-crimson-otter``); the name is written into every published file's ``sites``
list, so it must be readable in the Sync Queue and must not collide between machines.
Two adjectives (distinct) and an animal from the lists below give about 4.1 million
names (about 1 % chance of any clash among 300 machines), drawn with :mod:`secrets` so
machines cloned from one disk image still differ.
"""

from __future__ import annotations

import os
import secrets

__all__ = ["ENV_LOCAL_ID", "env_local_id", "generate_local_id"]

#: Overrides the stored id, like ``OPENPYPE_LOCAL_ID``.
ENV_LOCAL_ID = "SITESYNC_LOCAL_ID"


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_ADJECTIVES = _words("""
able agile amber ample ancient aqua arctic ardent azure balmy bold bouncy brave breezy
bright brisk bronze bubbly calm candid careful cheerful chief clever cobalt cosmic cozy
crimson crisp curious dainty daring dashing dazzling deep devoted dizzy dreamy dusty
eager earnest easy elegant emerald epic fancy fearless fiery flying fond frank free
fresh friendly frosty funny fuzzy gallant gentle giant gifted glad gleaming glossy
golden graceful grand great green happy hardy hasty hearty helpful heroic honest hopeful
humble icy ideal indigo jade jolly joyful keen kind lavish lively lofty loyal lucky lunar
magic majestic mellow merry mighty mint misty modest mystic neat nimble noble olive
opal orange patient peaceful pearl perky placid plucky polar polite proud quick quiet
radiant rapid rare ready regal rosy ruby rustic sandy scarlet serene sharp shiny silent
silky silver simple sleek smart smooth snowy solar sparkly speedy spicy steady stellar
stormy sturdy sunny super swift tender thrifty tidy tiny topaz tranquil trusty upbeat
valiant velvet vivid warm wavy whimsical wild windy wise witty zany zealous zesty
""")

_ANIMALS = _words("""
albatross alpaca antelope armadillo badger barracuda beaver bison bobcat buffalo
butterfly camel capybara caracal cardinal caribou cheetah chipmunk cobra condor cougar
coyote crane cricket crow dingo dolphin dove dragonfly duck eagle eel egret elephant elk
falcon ferret finch flamingo fox gazelle gecko gibbon giraffe gopher gorilla grouse gull
hamster hare hawk hedgehog heron hippo hornet horse hummingbird ibex ibis iguana impala
jackal jaguar jay kangaroo kestrel kingfisher kiwi koala lemur leopard lion llama lobster
lynx macaw magpie mallard manatee marmot marten meerkat mink mole mongoose moose moth
narwhal newt ocelot octopus okapi orca osprey ostrich otter owl panda panther parrot
pelican penguin pheasant pika platypus puffin puma quail quokka rabbit raccoon raven
reindeer robin salamander salmon seal shark sparrow squid squirrel starling stingray
stork swallow swan tapir tiger toucan turtle viper vulture walrus warthog weasel whale
wolf wombat woodpecker yak zebra
""")


def generate_local_id() -> str:
    """A fresh ``adjective-adjective-animal`` name (two different adjectives)."""
    first = secrets.choice(_ADJECTIVES)
    second = secrets.choice([word for word in _ADJECTIVES if word != first])
    return f"{first}-{second}-{secrets.choice(_ANIMALS)}"


def env_local_id() -> str | None:
    """``$SITESYNC_LOCAL_ID`` when set and not blank."""
    value = os.environ.get(ENV_LOCAL_ID, "").strip()
    return value or None
