terraform {
  # 1.11: the catalog password is an ephemeral value passed only to
  # write-only arguments, so it is never stored in the state.
  required_version = ">= 1.11"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.30, < 8.0"
    }
    # Only for google_project_service_identity (kms.tf).
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 6.30, < 8.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.7"
    }
  }
}
