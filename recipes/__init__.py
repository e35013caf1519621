"""Recipes, selected as `+recipe=NAME`. Installed as `framework_recipes`."""
