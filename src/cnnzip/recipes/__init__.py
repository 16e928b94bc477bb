"""Recipes: ordered compression stages (built-in YAML or your own) and ``compress``."""

from cnnzip.recipes.loader import Recipe, builtin_recipes, load_recipe, parse_recipe
from cnnzip.recipes.pipeline import Compressed, compress
from cnnzip.recipes.stages import RECIPE_STAGES, RecipeError

__all__ = [
    "RECIPE_STAGES",
    "Compressed",
    "Recipe",
    "RecipeError",
    "builtin_recipes",
    "compress",
    "load_recipe",
    "parse_recipe",
]
