"""The pages' strings in French and English. Templates call `t("key")`; a missing key in one
language falls back to French, the platform's first language."""

from __future__ import annotations

from collections.abc import Callable

from cagette_contracts import Language

STRINGS: dict[Language, dict[str, str]] = {
    Language.FR: {
        "app_name": "Cagette",
        "sign_in.title": "Connexion",
        "sign_in.email": "Adresse e-mail",
        "sign_in.password": "Mot de passe",
        "sign_in.submit": "Se connecter",
        "sign_in.forgot": "Mot de passe oublié ?",
        "sign_in.signed_out": "Vous êtes déconnecté·e.",
        "sign_in.session_ended": "Votre session a pris fin : connectez-vous à nouveau.",
        "sign_in.password_set": "Votre mot de passe est enregistré.",
        "wrong_credentials": "Adresse e-mail ou mot de passe incorrect.",
        "too_many_attempts": "Trop de tentatives de connexion. Réessayez dans quelques minutes.",
        "csrf_failed": "Le formulaire a expiré. Rechargez la page et réessayez.",
        "set_password.title": "Choisir un mot de passe",
        "set_password.password": "Nouveau mot de passe (10 caractères au moins)",
        "set_password.confirmation": "Confirmez le mot de passe",
        "set_password.submit": "Enregistrer",
        "password_mismatch": "Les deux mots de passe ne sont pas identiques.",
        "password_too_short": "Le mot de passe doit faire au moins 10 caractères.",
        "password_invalid": "Ce mot de passe contient des caractères non acceptés ou est trop long.",
        "link_unknown": "Ce lien n'est pas valide. Demandez un nouveau lien.",
        "link_used": "Ce lien a déjà servi. Demandez un nouveau lien si besoin.",
        "link_expired": "Ce lien a expiré. Demandez un nouveau lien.",
        "reset.title": "Réinitialiser le mot de passe",
        "reset.intro": "Indiquez votre adresse e-mail : vous recevrez un lien pour choisir un nouveau mot de passe.",
        "reset.submit": "Envoyer le lien",
        "reset.sent": "Si un compte existe pour cette adresse, un e-mail avec un lien vient de lui être envoyé.",
        "home.title": "Mon espace",
        "home.hello": "Bonjour {name}",
        "home.groups": "Mes groupes",
        "home.no_group": "Vous ne faites partie d'aucun groupe pour le moment.",
        "home.role.member": "membre",
        "home.role.coordinator": "coordinateur·rice",
        "home.group": "Groupe",
        "home.role": "Rôle",
        "home.balance": "Solde",
        "home.balance_unavailable": "indisponible pour le moment",
        "home.admin": "Administrateur·rice de la plateforme",
        "sign_out": "Se déconnecter",
    },
    Language.EN: {
        "app_name": "Cagette",
        "sign_in.title": "Sign in",
        "sign_in.email": "E-mail address",
        "sign_in.password": "Password",
        "sign_in.submit": "Sign in",
        "sign_in.forgot": "Forgot your password?",
        "sign_in.signed_out": "You are signed out.",
        "sign_in.session_ended": "Your session has ended: please sign in again.",
        "sign_in.password_set": "Your password is saved.",
        "wrong_credentials": "Wrong e-mail address or password.",
        "too_many_attempts": "Too many sign-in attempts. Try again in a few minutes.",
        "csrf_failed": "The form has expired. Reload the page and try again.",
        "set_password.title": "Choose a password",
        "set_password.password": "New password (at least 10 characters)",
        "set_password.confirmation": "Confirm the password",
        "set_password.submit": "Save",
        "password_mismatch": "The two passwords differ.",
        "password_too_short": "The password must be at least 10 characters long.",
        "password_invalid": "This password has characters that are not accepted, or is too long.",
        "link_unknown": "This link is not valid. Ask for a new one.",
        "link_used": "This link was already used. Ask for a new one if needed.",
        "link_expired": "This link has expired. Ask for a new one.",
        "reset.title": "Reset your password",
        "reset.intro": "Enter your e-mail address: you will receive a link to choose a new password.",
        "reset.submit": "Send the link",
        "reset.sent": "If an account exists for this address, an e-mail with a link has just been sent to it.",
        "home.title": "My space",
        "home.hello": "Hello {name}",
        "home.groups": "My groups",
        "home.no_group": "You are not in any group yet.",
        "home.role.member": "member",
        "home.role.coordinator": "coordinator",
        "home.group": "Group",
        "home.role": "Role",
        "home.balance": "Balance",
        "home.balance_unavailable": "unavailable right now",
        "home.admin": "Platform administrator",
        "sign_out": "Sign out",
    },
}


def translator(language: Language) -> Callable[..., str]:
    strings = STRINGS[language]

    def t(key: str, **values: object) -> str:
        text = strings.get(key) or STRINGS[Language.FR].get(key) or key
        return text.format(**values) if values else text

    return t


def language_from(accept_language: str | None, chosen: str | None = None) -> Language:
    """?lang= first, then the browser's preference (the first of fr/en it names), else French."""
    for candidate in [chosen or "", *(part.split(";")[0].strip()[:2] for part in (accept_language or "").split(","))]:
        if candidate.lower() in ("fr", "en"):
            return Language(candidate.lower())
    return Language.FR
