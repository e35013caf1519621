"""The prompts of the built-in data set: 60 everyday topics x 8 instruction templates = 480.

Written for this project. Each topic gives a noun phrase, an activity (a gerund phrase), a verb
phrase for "Why do people ...?" and a one-line definition (used only for the templated
pretraining paragraphs). `split_prompts` shuffles the 480 prompts with a fixed seed and cuts them
into disjoint sets for the ranking, demonstration and RL-prompt files.
"""

from __future__ import annotations

import random

# (noun phrase, activity, verb phrase, definition)
TOPICS = [
    ("a bicycle", "riding a bicycle in the city", "ride bicycles", "a two-wheeled vehicle that a rider moves by pushing pedals"),
    ("a vegetable garden", "growing vegetables at home", "grow their own vegetables", "a plot of soil where people grow food plants such as tomatoes, beans and lettuce"),
    ("coffee", "making coffee at home", "drink coffee in the morning", "a drink brewed from the roasted seeds of the coffee plant"),
    ("a library", "finding a good book to read", "visit libraries", "a building or room where books and other materials are kept for people to read or borrow"),
    ("an umbrella", "staying dry on a rainy day", "carry umbrellas", "a folding canopy on a stick that protects a person from rain or sun"),
    ("a budget", "saving money each month", "keep a budget", "a plan that lists expected income and spending over a period of time"),
    ("a passport", "traveling abroad for the first time", "need passports", "an official document that proves a person's identity and nationality when travelling"),
    ("yoga", "practicing yoga at home", "do yoga", "a practice of stretching, balance and breathing exercises that began in ancient India"),
    ("a recipe", "cooking dinner for friends", "follow recipes", "a set of instructions that explains how to prepare a dish"),
    ("a thermometer", "checking a child for a fever", "use thermometers", "an instrument that measures temperature"),
    ("a password", "keeping online accounts safe", "use strong passwords", "a secret string of characters used to prove who you are to a computer system"),
    ("a map", "finding your way in a new city", "read maps", "a drawing of an area that shows roads, places and landmarks"),
    ("a houseplant", "caring for indoor plants", "keep plants indoors", "a plant grown in a pot inside a home or office"),
    ("a resume", "applying for a job", "write resumes", "a short document that summarizes a person's education, skills and work experience"),
    ("a camera", "taking better photos", "take photographs", "a device that records images using light"),
    ("a marathon", "training for a long run", "run marathons", "a running race that covers about 42 kilometres"),
    ("a dentist", "keeping teeth healthy", "brush their teeth twice a day", "a doctor who cares for teeth and gums"),
    ("a piano", "learning to play the piano", "learn musical instruments", "a large keyboard instrument that makes sound when small hammers strike strings"),
    ("a calendar", "planning a busy week", "use calendars", "a chart of the days, weeks and months of a year"),
    ("recycling", "reducing household waste", "recycle", "the process of turning used materials into new products"),
    ("a tent", "camping outdoors", "go camping", "a portable shelter made of fabric held up by poles and ropes"),
    ("a volcano", "visiting a national park", "live near volcanoes", "an opening in the Earth's crust through which lava, ash and gas escape"),
    ("a battery", "making a phone battery last longer", "charge their phones overnight", "a device that stores chemical energy and releases it as electricity"),
    ("bread", "baking bread", "bake bread at home", "a food made from flour, water and usually yeast, baked in an oven"),
    ("a dictionary", "learning new words", "look up words in dictionaries", "a book or website that lists words with their meanings"),
    ("a smoke alarm", "keeping a home safe from fire", "install smoke alarms", "a device that senses smoke and sounds a loud warning"),
    ("a puppy", "training a new puppy", "adopt dogs", "a young dog"),
    ("chess", "getting better at chess", "play chess", "a board game for two players in which each side tries to trap the other's king"),
    ("a rainbow", "explaining the weather to a child", "stop to look at rainbows", "a band of colours that appears in the sky when sunlight shines through raindrops"),
    ("a museum", "planning a museum visit", "visit museums", "a place where objects of historical, scientific or artistic interest are kept and shown"),
    ("a spreadsheet", "organizing data", "use spreadsheets", "a computer program that arranges numbers and text in rows and columns"),
    ("sleep", "getting a good night's sleep", "need sleep", "a natural state of rest in which the body and mind recover"),
    ("swimming", "learning to swim", "swim", "moving through water using the arms and legs"),
    ("a compass", "hiking in the mountains", "go hiking", "an instrument with a magnetic needle that points north"),
    ("tea", "brewing a cup of tea", "drink tea", "a drink made by soaking the dried leaves of the tea plant in hot water"),
    ("a newspaper", "staying informed about the news", "read newspapers", "a regular publication that reports news, opinions and events"),
    ("a podcast", "starting a podcast", "listen to podcasts", "a series of spoken audio episodes that people can download or stream"),
    ("a vaccine", "preparing for a doctor's visit", "get vaccinated", "a medicine that trains the immune system to fight a disease"),
    ("a bridge", "building a model bridge", "build bridges", "a structure that carries a road or path over a river, valley or other obstacle"),
    ("solar power", "saving energy at home", "install solar panels", "electricity produced from sunlight"),
    ("a train", "taking a long train trip", "travel by train", "a line of connected railway cars pulled by an engine along tracks"),
    ("a lighthouse", "sailing a small boat", "build lighthouses", "a tower with a bright light that guides ships near the coast"),
    ("honey", "keeping bees", "eat honey", "a sweet, thick food made by bees from the nectar of flowers"),
    ("a sweater", "knitting a scarf", "wear sweaters in winter", "a warm knitted garment worn on the upper body"),
    ("a telescope", "looking at the stars", "study the night sky", "an instrument that makes distant objects look closer"),
    ("a first aid kit", "treating a small cut", "keep first aid kits", "a box of supplies for treating minor injuries"),
    ("email", "writing a polite email", "send emails", "a way of sending written messages between computers over a network"),
    ("a savings account", "building an emergency fund", "open savings accounts", "a bank account that holds money and pays a small amount of interest"),
    ("a picnic", "planning a picnic in the park", "have picnics", "a meal eaten outdoors, often in a park or the countryside"),
    ("a guitar", "learning guitar chords", "play the guitar", "a string instrument played by plucking or strumming"),
    ("a habit", "building a new daily habit", "form habits", "a behaviour repeated so often that it becomes automatic"),
    ("a snowman", "playing in the snow", "build snowmen", "a figure made of packed snow, usually shaped like a person"),
    ("a microwave oven", "reheating leftovers", "use microwave ovens", "a kitchen appliance that heats food with microwaves"),
    ("a vacuum cleaner", "cleaning a small apartment", "vacuum their homes", "a machine that cleans floors by sucking up dust and dirt"),
    ("a kite", "flying a kite", "fly kites", "a light frame covered with cloth or paper that flies in the wind on a long string"),
    ("meditation", "meditating for the first time", "meditate", "a practice of focusing attention, often on the breath, to calm the mind"),
    ("a farmers market", "shopping for fresh food", "shop at farmers markets", "a market where local farmers sell produce directly to the public"),
    ("a cover letter", "preparing for a job interview", "write cover letters", "a letter sent with a job application that explains why the applicant is a good fit"),
    ("a hammer", "hanging a picture on a wall", "use hammers", "a hand tool with a heavy head used for driving nails"),
    ("a wind turbine", "explaining renewable energy", "build wind farms", "a machine that turns the energy of the wind into electricity"),
]

TEMPLATES = [
    "Explain what {noun} is.",
    "Describe {noun} in a few words.",
    "What is the main purpose of {noun}?",
    "Why do people {verb}?",
    "Give me one tip for {activity}.",
    "How do I get started with {activity}?",
    "Name one common mistake people make when {activity}.",
    "What should a beginner know about {activity}?",
]

SEED = 1234
# Sizes of the disjoint prompt sets (they add up to all 480 prompts).
N_RANKINGS = 200
N_DEMONSTRATIONS = 130
N_PROMPTS = 150


def all_prompts() -> list[str]:
    """Every topic x template instruction, in a fixed order."""
    prompts = [
        template.format(noun=noun, activity=activity, verb=verb)
        for noun, activity, verb, _ in TOPICS
        for template in TEMPLATES
    ]
    assert len(set(prompts)) == len(prompts), "duplicate prompt"
    return prompts


def split_prompts(seed: int = SEED) -> dict[str, list[str]]:
    """Disjoint {"rankings", "demonstrations", "prompts"} lists, shuffled with `seed`."""
    prompts = all_prompts()
    random.Random(seed).shuffle(prompts)
    a, b = N_RANKINGS, N_RANKINGS + N_DEMONSTRATIONS
    return {
        "rankings": prompts[:a],
        "demonstrations": prompts[a:b],
        "prompts": prompts[b : b + N_PROMPTS],
    }


def pretraining_paragraphs(count: int = 200, seed: int = SEED) -> list[str]:
    """Templated encyclopedic paragraphs: a topic's definition, its activity and verb phrase, and
    the definition of one other topic drawn with `seed`."""
    rng = random.Random(seed)
    pairs = [(i, j) for i in range(len(TOPICS)) for j in range(len(TOPICS)) if i != j]
    chosen = rng.sample(pairs, count)
    texts = []
    for k, (i, j) in enumerate(chosen):
        noun, activity, verb, definition = TOPICS[i]
        other, _, _, other_definition = TOPICS[j]
        first = f"{_cap(noun)} is {definition}."
        middle = [
            f"Many people {verb}, and {activity} is a common everyday task connected with it.",
            f"People {verb} for many reasons, and guides about {activity} are easy to find.",
            f"A related activity is {activity}, which many beginners learn step by step.",
            f"In many countries people {verb}, often without thinking much about it.",
        ][k % 4]
        last = f"It is sometimes mentioned together with {other}, which is {other_definition}."
        texts.append(" ".join([first, middle, last]))
    return texts


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
